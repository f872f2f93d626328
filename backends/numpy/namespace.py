"""The names of the generated function and the arrays they are bound to.

The generated source reads two kinds of names: the user's (inputs and params, as they
were named: `x`, `W1`, `b1`) and its own (buffer views, scratch and filled arrays,
consts, data addresses, C kernels, chunk-loop locals, runtime helpers). Its own names
all begin with `_`. A user's name is written as it is when it is a Python identifier
that does not begin with `_`, is no keyword and is none of the few Python names the
code itself reads (PYTHON_NAMES); otherwise (or when another input or param took it
first) the value gets a generated name. So the two kinds cannot collide, by
construction, and no user's name is changed for looking like a generated one.

A `Namespace` holds the globals the generated function runs in and makes every
generated name; `ScratchPool` is its arrays for kernels' intermediates.

A shape-generic function (one with symbolic sizes, named `_dim_<dim>` in its source)
also has a *frame*: the arrays whose shapes depend on those sizes (buffer views,
scratch and filled arrays), the data addresses of them that C kernels take, and the
numbers that depend on the sizes. The frame function (`frame_source`) makes them for
one binding of the sizes, as views of grow-only arenas (runtime.Frames); the function
unpacks the frame of its call's sizes, so its statements read the same names as a
static function's globals.
"""

from __future__ import annotations

import keyword
from collections import defaultdict

import numpy as np

# Python names the generated code reads besides its own: NumPy and two builtins of the
# chunk loops. A user's name equal to one of them (or to a keyword) is not written.
PYTHON_NAMES = frozenset(keyword.kwlist) | {"np", "range", "min"}


def usable(name: str | None) -> bool:
    """Whether a user's name can be written in the source as it is."""
    return bool(name) and name.isidentifier() and not name.startswith("_") and (
        name not in PYTHON_NAMES)


class Namespace:
    """The globals of one generated function, and its generated names."""

    def __init__(self, helpers: dict):
        self.globals = {"np": np, **helpers}
        self._users = set()           # user's names already written
        self._counts = defaultdict(int)
        self._filled = {}             # (shape, dtype, number) -> name
        self.per_call = {}            # array expression -> name of its address, read per call
        self._addresses = {}          # data address -> its name, for arrays the function owns
        self.scratch = ScratchPool(self)
        self.sizes = ()               # the symbolic sizes' names, as the frame takes them
        self.frame = []               # (name, source) of each frame entry, in order
        self.arena_bytes = []         # per arena: its bytes, as source over the sizes
        self._framed_addresses = {}   # expression -> name of its address in the frame
        self._numbers = {}            # id of a lower.kernel.Runtime -> (it, its name)

    # the frame -----------------------------------------------------------------------

    def in_frame(self, prefix: str, source: str) -> str:
        """A new name the frame binds to `source` (over the sizes and earlier entries)."""
        return self.add_to_frame(self.fresh(prefix), source)

    def add_to_frame(self, name: str, source: str) -> str:
        self.frame.append((name, source))
        return name

    def frame_array(self, prefix: str, shape: tuple, dtype: np.dtype, arena=None) -> str:
        """A frame entry: an array of a symbolic shape viewing an arena (a new one of
        its own unless `arena` is given)."""
        if arena is None:
            arena = self.arena(f"{dtype.itemsize} * {size_text(shape)}")
        return self.in_frame(prefix, f"_view(_a[{arena}], {shape_source(shape)}, "
                                     f"np.{dtype.name})")

    def arena(self, nbytes: str) -> int:
        """A new grow-only arena of `nbytes` (source) at each binding; its index."""
        self.arena_bytes.append(nbytes)
        return len(self.arena_bytes) - 1

    def address_in_frame(self, expr: str) -> str:
        """The name of the data address of `expr` (an array of the frame) at each binding."""
        if expr not in self._framed_addresses:
            self._framed_addresses[expr] = self.in_frame("at", f"_data({expr})")
        return self._framed_addresses[expr]

    def runtime_number(self, number) -> str:
        """The name of a number that depends on the sizes (lower.kernel.Runtime) at
        each binding: a Python number, as a literal would be."""
        if id(number) not in self._numbers:
            sizes = "{" + ", ".join(f"{n!r}: {n}" for n in self.sizes) + "}"
            name = self.in_frame("n", f"_number({self.bind('r', number)}, {sizes})")
            self._numbers[id(number)] = (number, name)
        return self._numbers[id(number)][1]

    def frame_source(self, fn_name: str) -> list:
        """The frame function's lines: the arenas at the sizes, then every entry."""
        lines = [f"def {fn_name}({', '.join(self.sizes)}):",
                 f"    _a = _frames.arenas({tuple_source(self.arena_bytes)})"]
        lines += [f"    {name} = {source}" for name, source in self.frame]
        lines.append(f"    return {tuple_source([name for name, _ in self.frame])}")
        return lines

    def frame_unpacking(self) -> str:
        """The statement that binds the frame's names at a call (its sizes' frame)."""
        names = [name for name, _ in self.frame]
        return f"{', '.join(names)}{',' if len(names) == 1 else ''} = " \
               f"_frames.get({', '.join(self.sizes)})"

    def user(self, name: str | None, prefix: str) -> str:
        """The user's name of an input or param, or a generated one (see the module)."""
        if usable(name) and name not in self._users:
            self._users.add(name)
            return name
        return self.fresh(prefix)

    def fresh(self, prefix: str) -> str:
        """A new generated name: `_` + prefix + a number."""
        count = self._counts[prefix]
        self._counts[prefix] += 1
        return f"_{prefix}{count}"

    def bind(self, prefix: str, value) -> str:
        """A new generated name bound to `value` (an array, a number, a function)."""
        name = self.fresh(prefix)
        self.globals[name] = value
        return name

    def filled(self, shape: tuple, dtype: np.dtype, value: str, fixed: bool = True) -> str:
        """The name of a read-only array of that shape and dtype holding the number
        `value` (a Python literal, or unless `fixed` a name of the frame), one per
        (shape, dtype, value); in the frame where the shape is symbolic."""
        key = (shape, dtype, value)
        if key not in self._filled:
            if is_symbolic(shape) or not fixed:
                name = self.frame_array("z", shape, dtype)
                self.frame[-1] = (name, f"_fill({self.frame[-1][1]}, {value})")
                self._filled[key] = name
            else:
                array = np.full(shape, float(value), dtype)
                array.flags.writeable = False
                self._filled[key] = self.bind("z", array)
        return self._filled[key]

    def address(self, array: np.ndarray) -> str:
        """The name of an array's data address, for an array the function owns (a buffer
        view, a const): fixed at build time."""
        return self.bind("at", array.ctypes.data)

    def address_per_call(self, expr: str) -> str:
        """The name of the data address of `expr` (an input or a param), read at the
        start of each call: its array may be another one each call."""
        if expr not in self.per_call:
            self.per_call[expr] = self.fresh("at")
        return self.per_call[expr]


class ScratchPool:
    """Arrays for kernels' intermediates, shared by all kernels: kernels run one after
    another, so every scratch array is free again when the next one starts. One of a
    symbolic shape is an arena of the frame."""

    def __init__(self, namespace: Namespace):
        self._namespace = namespace
        self.arrays = {}   # name -> ndarray (a fixed shape)
        self.kinds = {}    # name -> (shape, dtype), in the order they were made
        self.by_kind = {}  # (shape, dtype) -> [names], in the order they were made

    def take(self, shape, dtype, busy) -> str:
        """A scratch array of that shape and dtype, none of those `busy`."""
        for name in self.by_kind.get((shape, dtype), ()):
            if name not in busy:
                return name
        if is_symbolic(shape):
            name = self._namespace.frame_array("s", shape, dtype)
        else:
            array = np.empty(shape, dtype)
            name = self._namespace.bind("s", array)
            self.arrays[name] = array
        self.kinds[name] = (shape, dtype)
        self.by_kind.setdefault((shape, dtype), []).append(name)
        return name

    @property
    def nbytes(self) -> int:
        """Bytes of the scratch arrays of fixed shape."""
        return sum(a.nbytes for a in self.arrays.values())


def is_symbolic(shape: tuple) -> bool:
    """Whether a shape has a symbolic size (a name, or source over names)."""
    return any(isinstance(d, str) for d in shape)


def shape_source(shape: tuple) -> str:
    """A shape as Python source: `(_dim_batch, 8)`, `(3,)`."""
    return tuple_source([str(d) for d in shape])


def tuple_source(items: list) -> str:
    """A tuple of source items as source: `(a, b)`, `(a,)`, `()`."""
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def size_text(shape: tuple) -> str:
    """The element count of a shape as Python source (its entries ints, or source)."""
    return " * ".join(str(d) if isinstance(d, int) or d.isidentifier() else f"({d})"
                      for d in shape) or "1"
