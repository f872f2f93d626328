"""Fused kernels as C loops, for the kernels NumPy would run as many small calls.

In a training step most non-matmul kernels are small (a softmax cross-entropy over
256 x 10 values is some twenty ufunc calls) or read a matmul's output once or twice (a
relu, a relu-backward mask). Each NumPy call costs microseconds of dispatch, and right
after a BLAS call two to four times that (bench/README.md). A kernel written as one C
loop nest does the same work in one call: the body's values are C locals, computed in
the loop that needs them, and only the kernel's output is stored. TorchInductor's CPU
backend does the same in C++; graphc writes C99 and compiles all such kernels of a
function into one library with the system C compiler (ccompile.py). Without a compiler
the numpy backend keeps its NumPy kernels.

What a C kernel can be (`plan` raises Unsupported, with a one-line reason, otherwise):
- the domain (the iteration space) is the shape of the body's reductions' input, or of
  its biggest value if it has none, viewed as R rows (all axes but the last) x C columns;
- every value is read at (r, c) in one of four ways, told by its shape: all of the domain
  (index r*C + c), a number a row (shape R or R + (1,): index r), a number a column
  (shape (C,) or (1, ..., C): index c), or one number (index 0);
- reductions (sum, max) are all over the last axis (row reductions: softmax, logsumexp,
  a cross-entropy), or all over the first axis of a 2-D domain and independent of each
  other (column reductions: a bias gradient);
- the ops are those of OPS_C, on float and bool values; int values may be read (labels
  of one_hot, compares, casts) but not computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc import ops
from graphc.ir import Node, topological_order
from graphc.types import TensorType, promote

C_TYPES = {"float32": "float", "float64": "double", "bool": "unsigned char",
           "int32": "int32_t", "int64": "int64_t"}
FLOATS = ("float32", "float64")


def _libm(name):
    def call(t, *args):
        return f"{name}{'f' if t == 'float32' else ''}({', '.join(args)})"
    return call


def _zero(t):
    return f"({C_TYPES[t]})0"


# op -> (result dtype, operand expressions in the dtype the op computes in) -> C expression.
# NaN behaves as in NumPy: maximum, minimum and relu pass it on, a compare gives false.
OPS_C = {
    "add": lambda t, a, b: f"({a} + {b})",
    "sub": lambda t, a, b: f"({a} - {b})",
    "mul": lambda t, a, b: f"({a} * {b})",
    "div": lambda t, a, b: f"({a} / {b})",
    "neg": lambda t, a: f"(-{a})",
    "exp": _libm("exp"), "log": _libm("log"), "log1p": _libm("log1p"),
    "sqrt": _libm("sqrt"), "tanh": _libm("tanh"), "pow": _libm("pow"), "abs": _libm("fabs"),
    # 1 / (1 + e^-x): e^-x overflows to inf for very negative x, giving 0, as NumPy's code
    "sigmoid": lambda t, a: f"(({C_TYPES[t]})1 / (({C_TYPES[t]})1 + {_libm('exp')(t, '-' + a)}))",
    "relu": lambda t, a: f"({a} <= 0 ? {_zero(t)} : {a})",
    "step": lambda t, a: f"(({C_TYPES[t]})({a} > 0))",
    "sign": lambda t, a: f"({a} != {a} ? {a} : ({C_TYPES[t]})(({a} > 0) - ({a} < 0)))",
    "maximum": lambda t, a, b: f"(({a} != {a} || {a} >= {b}) ? {a} : {b})",
    "minimum": lambda t, a, b: f"(({a} != {a} || {a} <= {b}) ? {a} : {b})",
    "gt": lambda t, a, b: f"({a} > {b})", "ge": lambda t, a, b: f"({a} >= {b})",
    "lt": lambda t, a, b: f"({a} < {b})", "le": lambda t, a, b: f"({a} <= {b})",
    "eq": lambda t, a, b: f"({a} == {b})", "ne": lambda t, a, b: f"({a} != {b})",
    "where": lambda t, c, a, b: f"({c} ? {a} : {b})",
    "cast": lambda t, a: f"({a} != 0)" if t == "bool" else f"(({C_TYPES[t]}){a})",
}
# Views that keep their operand's elements in their order: a C kernel reads through them.
ORDER_KEEPING = ("reshape", "squeeze", "expand_dims", "stop_gradient")
# Layout ops whose value is its operand's, element for element, read by its own shape.
SAME_ELEMENTS = ORDER_KEEPING + ("broadcast_to",)
# Ops whose NumPy loops are SIMD code that beats libm on large arrays.
TRANSCENDENTAL = ("exp", "log", "log1p", "tanh", "sigmoid", "pow", "sqrt")
# reduction -> (initial value, how the accumulator takes a value); max passes NaN on
REDUCTIONS = {"sum": ("0", "{acc} + {v}"),
              "max": ("-INFINITY", "(({acc} != {acc} || {acc} >= {v}) ? {acc} : {v})")}
_LEVELS = {"top": 0, "row": 1, "elem": 2}


class Unsupported(Exception):
    """Why a kernel stays NumPy code (one line)."""


@dataclass
class CKernel:
    """A fused body as a C function `int name(in0, in1, ..., out)` over raw pointers: it
    returns 0, or 1 + the row of a one_hot label outside [0, depth)."""
    name: str
    source: str
    operands: list               # what each in<k> points to: outer nodes or const arrays
    labels: Node | None = None   # the operand holding one_hot labels that are checked
    depth: int = 0
    scratch: tuple = ()          # (elements, dtype) of the array `acc` it needs, if any


def plan(name, steps, result, leaves, dims, known, aliased=frozenset()) -> CKernel:
    """The C kernel computing `result` from a fused body's `steps` (its computing nodes, in
    order). leaves: body value -> what the kernel reads for it (an outer node or a const
    array); known: value -> the number it holds throughout, when known at build time;
    aliased: leaves stored where the output goes (each is then read before it is written,
    element for element, or the kernel is refused)."""
    return _Writer(name, steps, result, leaves, dims, known, aliased).write()


def worth_compiling(steps, elements: int) -> bool:
    """Profitability, apart from capability: NumPy's SIMD exp/log/tanh beat libm's on
    large arrays, so big kernels that use them stay NumPy; anything else is one C call
    instead of one NumPy call a step."""
    return elements <= 65536 or not any(s.op in TRANSCENDENTAL for s in steps)


class _Writer:
    def __init__(self, name, steps, result, leaves, dims, known, aliased):
        self.name, self.steps, self.result = name, steps, result
        self.leaves, self.dims, self.known, self.aliased = leaves, dims, dict(known), aliased
        reductions = [s for s in steps if s.op in REDUCTIONS]
        self.domain = self._domain(reductions)
        self.R = int(np.prod(self.domain[:-1], dtype=np.int64))
        self.C = self.domain[-1]
        last = (len(self.domain) - 1,)
        self.columns = bool(reductions) and len(self.domain) == 2 and all(
            r.attrs["axes"] == (0,) for r in reductions) and last != (0,)
        if reductions and not self.columns and any(r.attrs["axes"] != last for r in reductions):
            raise Unsupported("a reduction over other axes than the last (or the first of two)")
        self.reductions = reductions
        self.index, self.level, self.expr = {}, {}, {}
        self.operands, self.names = [], {}
        self.row = []                     # checks once a row, after its loads
        self.labels = None

    # where values live ---------------------------------------------------------------

    def _shape(self, node):
        return node.type.concrete_shape(self.dims)

    def _domain(self, reductions):
        if not reductions:  # the biggest value's shape; of two as big, the higher rank's
            shapes = [self._shape(v) for v in self.steps + [self.result]]
            return max(shapes, key=lambda s: (int(np.prod(s, dtype=np.int64)), len(s))) or (1,)
        shapes = {self._shape(r.inputs[0]) for r in reductions}
        if len(shapes) != 1 or () in shapes:
            raise Unsupported("reductions over inputs of different shapes, or of scalars")
        return shapes.pop()

    def _index_of(self, node) -> str:
        """How a value is read at (r, c), from its own shape."""
        return self._index_of_shape(self._shape(node))

    def _read_as(self, node, rank: int) -> str:
        """How an operand is read by an op of higher rank: NumPy broadcasting lines its
        axes up with the op's last ones (a row reduction's (R,) value read beside an
        R x C one would be read along the columns)."""
        shape = self._shape(node)
        index = self._index_of_shape((1,) * (rank - len(shape)) + shape)
        if index != self.index[node] and self.index[node] != "0":
            raise Unsupported(f"a value of shape {shape} broadcast to rank {rank} is read "
                              "along other axes than it was computed")
        return index

    def _index_of_shape(self, shape) -> str:
        d = self.domain
        size = int(np.prod(shape, dtype=np.int64))
        if _squeezed(shape) == _squeezed(d):  # the domain's elements in its order
            return "rc"
        if size == 1:
            return "0"
        rows = d[:-1]
        is_row = shape in (rows, rows + (1,)) and not self.columns
        is_column = shape in ((d[-1],), (1,) * (len(d) - 1) + (d[-1],))
        if is_row and is_column:  # (N,) in an N x N domain: one a row or one a column?
            raise Unsupported(f"a value of shape {shape} is ambiguous in the domain {d}")
        if is_row or is_column:
            return "r" if is_row else "c"
        raise Unsupported(f"a value of shape {shape} is not a row, a column or all of {d}")

    def _name(self, node) -> str:
        return self.names.setdefault(node, f"v{len(self.names)}")

    # the body ------------------------------------------------------------------------

    def write(self) -> CKernel:
        for value, source in self.leaves.items():
            self._leaf(value, source)
        for value in self.known:  # consts of the body, numbers known at build time
            if value not in self.index:
                self._leaf(value, None)
        for step in self.steps:
            self._step(step)
        if self.result not in self.index:
            raise Unsupported("the result is an operand of the kernel as it is")
        if self.result.dtype not in C_TYPES:
            raise Unsupported(f"result dtype {self.result.dtype}")
        if self.result in self.aliased:
            raise Unsupported("the result is an operand")
        scratch = (len(self.reductions) * self.C, self.result.dtype) if self.columns else ()
        source = self._function()
        return CKernel(self.name, source, self.operands, self.labels and self.labels[0],
                       self.labels[1] if self.labels else 0, scratch)

    def _leaf(self, value, source):
        number = self.known.get(value)
        if number is not None:
            self.index[value], self.level[value] = "0", "top"
            self.expr[value] = _literal(number, value.dtype)
            return
        if value.dtype not in C_TYPES:
            raise Unsupported(f"an operand of dtype {value.dtype}")
        index = self._index_of(value)
        if value in self.aliased and index != self._index_of(self.result):
            raise Unsupported("the output overwrites an operand read in another layout")
        k = len(self.operands)
        self.operands.append(source)
        self.index[value] = index
        self.level[value] = {"rc": "elem", "c": "elem", "r": "row", "0": "top"}[index]
        at = {"rc": "rC + c", "c": "c", "r": "r", "0": "0"}[index]
        load = f"{C_TYPES[value.dtype]} {self._name(value)} = (({_ptr(value.dtype, True)})in{k})[{at}];"
        self.expr[value] = ("load", load)

    def _step(self, step):
        if self._fold(step):
            return
        if any(i not in self.index for i in step.inputs):
            raise Unsupported(f"{step.op} reads a value the kernel does not have")
        if step.op in SAME_ELEMENTS:
            self._alias(step)
        elif step.op in REDUCTIONS:
            self._reduction(step)
        elif step.op == "one_hot":
            self._one_hot(step)
        elif step.op in OPS_C and step.dtype in C_TYPES and (
                step.dtype in FLOATS + ("bool",)):
            self._elementwise(step)
        else:
            raise Unsupported(f"{step.op} -> {step.dtype} has no C form here")

    def _fold(self, step) -> bool:
        """Elementwise and layout steps of known numbers are numbers (as the NumPy path)."""
        numbers = [self.known.get(i) for i in step.inputs]
        foldable = step.op in SAME_ELEMENTS or step.op == "size" or (
            ops.OPS[step.op].kind in ops.ELEMENTWISE_KINDS)
        if step.op == "size":
            shape = self._shape(step.inputs[0])
            numbers = [np.prod([shape[a] for a in step.attrs["axes"]], dtype=np.int64)]
        elif any(n is None for n in numbers) or not foldable:
            return False
        if step.op == "size":
            value = np.asarray(numbers[0]).astype(np.dtype(step.dtype))
        elif step.op in SAME_ELEMENTS:
            value = numbers[0]
        else:
            value = ops.evaluate(step.op, [np.asarray(n) for n in numbers], step.attrs,
                                 TensorType((), step.dtype), {})
        self.known[step] = np.asarray(value).reshape(())
        self.index[step], self.level[step] = "0", "top"
        self.expr[step] = _literal(self.known[step], step.dtype)
        return True

    def _alias(self, step):
        (operand,) = step.inputs
        index = self._index_of(step)
        if step.op == "broadcast_to":
            read = self._read_as(operand, len(self._shape(step)))
            fits = _reads(index, read)
        else:  # reshape, squeeze, expand_dims keep the elements in their order
            fits = index == self.index[operand]
        if not fits:
            raise Unsupported(f"{step.op} from {self._shape(operand)} to {self._shape(step)} "
                              "moves elements")
        self.index[step], self.level[step] = self.index[operand], self.level[operand]
        self.expr[step] = ("same", operand)

    def _elementwise(self, step):
        index = self._index_of(step)
        rank = len(self._shape(step))
        for i in step.inputs:
            read = self._read_as(i, rank) if len(self._shape(i)) < rank else self.index[i]
            if not _reads(index, read):
                raise Unsupported(f"{step.op} reads a {self.index[i]}-value into a {index}-value")
        self.index[step] = index
        self.level[step] = max((self.level[i] for i in step.inputs), key=_LEVELS.get,
                               default="top")
        self.expr[step] = ("op", step)

    def _reduction(self, step):
        (operand,) = step.inputs
        if step.dtype not in FLOATS or self.index[operand] != "rc":
            raise Unsupported(f"{step.op} of a {operand.dtype} {self.index[operand]}-value")
        if self.columns and self._depends_on_reduction(operand):
            raise Unsupported("a column reduction of another reduction's result")
        if step.op == "max" and (self.R if self.columns else self.C) == 0:
            raise Unsupported("max over an empty axis (NumPy raises)")
        self.index[step] = "c" if self.columns else self._index_of(step)
        self.level[step] = "elem" if self.columns else "row"
        self.expr[step] = ("reduction", step)

    def _one_hot(self, step):
        (labels,) = step.inputs
        if self.columns or self._index_of(step) != "rc" or self.index[labels] != "r":
            raise Unsupported("a one_hot that is not one row of the domain a label")
        if self.labels is not None or labels not in self.leaves:
            raise Unsupported("a one_hot of computed labels, or two of them")
        if step.attrs["depth"] != self.C or step.dtype not in FLOATS:
            raise Unsupported("a one_hot whose depth is not the domain's last axis")
        self.labels = (self.leaves[labels], step.attrs["depth"])
        self.row.append(f"if ({self._name(labels)} < 0 || {self._name(labels)} >= "
                        f"{self.C}) return (int)r + 1;")
        self.index[step], self.level[step] = "rc", "elem"
        self.expr[step] = ("one_hot", step)

    def _depends_on_reduction(self, node) -> bool:
        return any(v.op in REDUCTIONS for v in topological_order([node]))

    # C text --------------------------------------------------------------------------

    def _value(self, node) -> str:
        """The C expression that reads a value already defined where it is used."""
        kind = self.expr[node]
        if isinstance(kind, str):
            return kind
        if kind[0] == "same":
            return self._value(kind[1])
        return self._name(node)

    def _inputs(self, node) -> list:
        kind = self.expr[node]
        if isinstance(kind, str) or kind[0] == "load":
            return []
        return [kind[1]] if kind[0] == "same" else list(node.inputs)

    def _definition(self, node, accumulator=None) -> str | None:
        kind = self.expr[node]
        if isinstance(kind, str) or kind[0] == "same":
            return None
        if kind[0] == "load":
            return kind[1]
        t = C_TYPES[node.dtype]
        if kind[0] == "reduction":
            return f"{t} {self._name(node)} = ({t}){accumulator};"
        if kind[0] == "one_hot":
            return f"{t} {self._name(node)} = ({t})({self._value(node.inputs[0])} == c);"
        args = [self._operand(node, i, k) for k, i in enumerate(node.inputs)]
        return f"{t} {self._name(node)} = {OPS_C[node.op](node.dtype, *args)};"

    def _operand(self, node, operand, k) -> str:
        """An operand in the dtype the op computes in: the promoted dtype for a compare,
        as it is for where's condition and a cast, the result's dtype otherwise (as the
        NumPy path computes)."""
        if ops.OPS[node.op].kind == "compare":
            want = promote(*(i.dtype for i in node.inputs))
        elif (node.op == "where" and k == 0) or node.op == "cast":
            want = operand.dtype
        else:
            want = node.dtype
        value = self._value(operand)
        return value if operand.dtype == want else f"(({C_TYPES[want]}){value})"

    def _cone(self, targets, level, defined) -> list:
        """The values of `level` that `targets` need and `defined` lacks, each after the
        values it reads (a depth-first post-order); adds them to `defined`. Values of a
        lower level are defined outside this scope; a reduction is defined by its own loop."""
        order, seen = [], set()
        stack = [(t, False) for t in reversed(targets)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                if self.level[node] == level and node not in defined:
                    defined.add(node)
                    order.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.append((node, True))
            if _LEVELS[self.level[node]] < _LEVELS[level] or (
                    any(node is r for r in self.reductions) and level != "top"):
                continue
            stack += [(i, False) for i in reversed(self._inputs(node)) if i not in seen]
        return order

    def _defs(self, targets, level, defined, indent) -> list:
        lines = []
        for node in self._cone(targets, level, defined):
            text = self._definition(node)
            if text is not None:
                lines.append(" " * indent + text)
        return lines

    def _function(self) -> str:
        params = [f"void *in{k}" for k in range(len(self.operands))] + ["void *out"]
        if self.columns:
            params.append(f"{C_TYPES[self.result.dtype]} *acc")
        out_t = _ptr(self.result.dtype)
        lines = [f"int {self.name}({', '.join(params)}) {{",
                 f"    {out_t}o = ({out_t})out;",
                 f"    const int64_t R = {self.R}, C = {self.C};",
                 "    (void)R; (void)C;"]
        lines += self._defs([self.result] + self.reductions, "top", set(), 4)
        body = self._columns() if self.columns else self._rows()
        return "\n".join(lines + body + ["    return 0;", "}"]) + "\n"

    def _rows(self) -> list:
        lines = ["    for (int64_t r = 0; r < R; r++) {", "        const int64_t rC = r * C;",
                 "        (void)rC;"]
        row = set()
        loads = [n for n, k in self.expr.items() if isinstance(k, tuple) and k[0] == "load"
                 and self.level[n] == "row"]
        lines += self._defs(loads, "row", row, 8) + ["        " + s for s in self.row]
        for reduction in self.reductions:  # in body order: later ones may read earlier ones
            operand = reduction.inputs[0]
            lines += self._defs([operand], "row", row, 8)
            init, take = REDUCTIONS[reduction.op]
            acc = f"acc{self._name(reduction)}"
            acc_type = "double" if reduction.op == "sum" else C_TYPES[reduction.dtype]
            lines += [f"        {acc_type} {acc} = {init};",
                      "        for (int64_t c = 0; c < C; c++) {"]
            lines += self._defs([operand], "elem", set(), 12)
            lines += [f"            {acc} = {take.format(acc=acc, v=self._value(operand))};",
                      "        }", "        " + self._definition(reduction, acc)]
            row.add(reduction)
        lines += self._defs([self.result], "row", row, 8)
        # Where the result goes is told by its shape, not by how it is computed: a
        # number broadcast over the domain is stored in every element.
        out_index = self._index_of(self.result)
        if out_index in ("c", "0") and self.R > 1:  # it would be stored once a row
            raise Unsupported("a result smaller than the rows of its kernel")
        store = {"rc": "rC + c", "c": "c", "r": "r", "0": "0"}[out_index]
        if out_index in ("rc", "c") or self.level[self.result] == "elem":
            lines += ["        for (int64_t c = 0; c < C; c++) {"]
            lines += self._defs([self.result], "elem", set(), 12)
            lines += [f"            o[{store}] = {self._value(self.result)};", "        }"]
        else:
            lines += [f"        o[{store}] = {self._value(self.result)};"]
        return lines + ["    }"]

    def _columns(self) -> list:
        kinds = {r.op for r in self.reductions}
        if len(kinds) != 1 or {r.dtype for r in self.reductions} != {self.result.dtype}:
            raise Unsupported("column reductions of different kinds or dtypes")
        init, take = REDUCTIONS[kinds.pop()]
        lines = [f"    for (int64_t c = 0; c < {len(self.reductions)} * C; c++) acc[c] = {init};",
                 "    for (int64_t r = 0; r < R; r++) {", "        const int64_t rC = r * C;",
                 "        for (int64_t c = 0; c < C; c++) {"]
        lines += self._defs([r.inputs[0] for r in self.reductions], "elem", set(), 12)
        for k, reduction in enumerate(self.reductions):
            acc = f"acc[{k} * C + c]"
            lines.append(f"            {acc} = "
                         f"{take.format(acc=acc, v=self._value(reduction.inputs[0]))};")
        lines += ["        }", "    }", "    for (int64_t c = 0; c < C; c++) {"]
        final = set(self.reductions)
        for k, reduction in enumerate(self.reductions):
            lines.append("        " + self._definition(reduction, f"acc[{k} * C + c]"))
        after = self._cone([self.result], "elem", final)
        out_index = self._index_of(self.result)
        if out_index == "rc" and self.R == 1:  # one row: the domain is one column's worth
            out_index = "c"
        if any(self.index[v] == "rc" for v in after) or out_index not in ("c", "0"):
            raise Unsupported("a column reduction's epilogue reads the whole domain")
        lines += ["        " + d for d in map(self._definition, after) if d is not None]
        store = "c" if out_index == "c" else "0"
        return lines + [f"        o[{store}] = {self._value(self.result)};", "    }"]


def _squeezed(shape) -> tuple:
    return tuple(n for n in shape if n != 1)


def _reads(into: str, index: str) -> bool:
    """Whether a value of `into`'s index can be computed from one of `index`'s."""
    return index == "0" or index == into or into == "rc"


def _ptr(dtype, const=False) -> str:
    return f"{'const ' if const else ''}{C_TYPES[dtype]} *"


def _literal(number, dtype) -> str:
    value = np.asarray(number).item()
    if dtype == "bool" or isinstance(value, bool):
        return "1" if value else "0"
    if dtype not in FLOATS:
        return str(int(value))
    value = float(value)
    if value != value:
        return "NAN"
    if value in (float("inf"), float("-inf")):
        return "INFINITY" if value > 0 else "(-INFINITY)"
    if dtype == "float32":
        return f"{np.float32(value).item()!r}f"
    return repr(value)
