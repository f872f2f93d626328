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

    def filled(self, shape: tuple, dtype: np.dtype, value: str) -> str:
        """The name of a read-only array of that shape and dtype holding the number
        `value` (a Python literal), one per (shape, dtype, value)."""
        key = (shape, dtype, value)
        if key not in self._filled:
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
    another, so every scratch array is free again when the next one starts."""

    def __init__(self, namespace: Namespace):
        self._namespace = namespace
        self.arrays = {}   # name -> ndarray
        self.by_kind = {}  # (shape, dtype) -> [names], in the order they were made

    def take(self, shape, dtype, busy) -> str:
        """A scratch array of that shape and dtype, none of those `busy`."""
        for name in self.by_kind.get((shape, dtype), ()):
            if name not in busy:
                return name
        array = np.empty(shape, dtype)
        name = self._namespace.bind("s", array)
        self.arrays[name] = array
        self.by_kind.setdefault((shape, dtype), []).append(name)
        return name

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())
