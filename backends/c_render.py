"""C source from a loop nest (backends/lower/loops.py): one function per kernel.

A kernel becomes `int name(void *in0, ..., void *out[, acc])` over raw pointers; it
returns 0, or 1 when a one_hot label lies outside its depth (the caller then raises).
Each operand is read through its own strides (`Operand`), so transposed, sliced and
broadcast views need no copy.

Loops run over the kept axes, outermost first, and each value is computed in the
innermost loop among the axes it varies over (a bias read once a column, a row's max
once a row). A reduction is a loop nest over the reduced axes at the depth where its
value is wanted; its operand's values are computed inside it. When the reduced axes
are not the innermost one (a bias gradient sums over the batch), the reduced loops go
outside the kept ones instead, with one accumulator a kept point, so the inner loop
still walks memory in order ("accumulators outside").

Sizes may be symbolic (index.py): a loop over an axis of symbolic size runs to an
`int64_t` argument of that size's name (`_dim_batch`), after the pointers; a number
fixed only at each call (loops.Scalar: a mean's 1 / batch) is an argument `n<k>` after
those. So one compiled function serves every binding of the symbolic dims.

NaN behaves as in NumPy: maximum, minimum, relu and max pass it on, a compare gives
false. Sums accumulate float32 in double. Values of integer dtype are read, compared,
cast and selected; arithmetic on them stays NumPy's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.backends.lower import index as ix
from graphc.backends.lower.loops import (
    Apply, Load, LoopNest, Number, Position, Product, Reduce, Scalar, Unsupported)

C_TYPES = {"float32": "float", "float64": "double", "bool": "unsigned char",
           "int32": "int32_t", "int64": "int64_t"}
FLOATS = ("float32", "float64")


def _libm(name):
    def call(t, *args):
        return f"{name}{'f' if t == 'float32' else ''}({', '.join(args)})"
    return call


def _zero(t):
    return f"({C_TYPES[t]})0"


def _mod(t, a, b):
    """NumPy's floating mod (npy_divmod): fmod, moved by b where its sign is not b's, and
    a zero of b's sign; nan stays nan (the first branch, nan + b)."""
    m = _libm("fmod")(t, a, b)
    return f"(({m} != 0 && ({m} < 0) != ({b} < 0)) ? {m} + {b} : {_libm('copysign')(t, m, b)})"


# op -> (result dtype, operand expressions, already in the dtype the op computes in) ->
# C expression.
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
    # --- issue 14's elementwise ops (h-elem) ---
    "sin": _libm("sin"), "cos": _libm("cos"), "erf": _libm("erf"), "floor": _libm("floor"),
    "tan": _libm("tan"), "ceil": _libm("ceil"), "trunc": _libm("trunc"),
    "round": _libm("rint"),            # the default rounding mode: half to even
    "reciprocal": lambda t, a: f"(({C_TYPES[t]})1 / {a})",
    "rsqrt": lambda t, a: f"(({C_TYPES[t]})1 / {_libm('sqrt')(t, a)})",
    "square": lambda t, a: f"({a} * {a})",
    "fmod": _libm("fmod"),
    "mod": lambda t, a, b: _mod(t, a, b),
    "isnan": lambda t, a: f"({a} != {a})",
    "isinf": lambda t, a: f"({a} == INFINITY || {a} == -INFINITY)",
    "isfinite": lambda t, a: f"({a} == {a} && {a} != INFINITY && {a} != -INFINITY)",
    "logical_not": lambda t, a: f"({a} == 0)",
    "logical_and": lambda t, a, b: f"({a} != 0 && {b} != 0)",
    "logical_or": lambda t, a, b: f"({a} != 0 || {b} != 0)",
    "logical_xor": lambda t, a, b: f"(({a} != 0) != ({b} != 0))",
}
# Ops on integers C may compute (exactly as NumPy does): selecting, comparing, casting.
INTEGER_OPS = ("where", "cast", "gt", "ge", "lt", "le", "eq", "ne")
# reduction -> (initial value, how the accumulator takes a value); max passes NaN on
REDUCTIONS = {"sum": ("0", "{acc} + {v}"),
              "max": ("-INFINITY", "(({acc} != {acc} || {acc} >= {v}) ? {acc} : {v})"),
              # --- issue 14's reductions (h-elem) ---
              "min": ("INFINITY", "(({acc} != {acc} || {acc} <= {v}) ? {acc} : {v})"),
              "prod": ("1", "{acc} * {v}")}


@dataclass(frozen=True)
class Operand:
    """How a kernel reads one operand: its dtype and its strides in elements."""
    dtype: str
    strides: tuple


def render(name: str, nest: LoopNest, operands: list, out_dtype: str) -> "CFunction":
    """The C function computing `nest` (raises Unsupported for what C does not do)."""
    return _Writer(name, nest, operands, out_dtype).function()


@dataclass(frozen=True)
class CFunction:
    name: str
    source: str
    operands: tuple          # the kernel operands it reads, in the order of its in<k>
    scratch: tuple = ()      # (elements, dtype) of the accumulator array it needs (the
                             # elements an int, or source over symbolic sizes)
    sizes: tuple = ()        # the symbolic sizes it takes, after the pointers
    numbers: tuple = ()      # the loops.Scalar values it takes as n<k>, after those


class _Writer:
    def __init__(self, name, nest: LoopNest, operands, out_dtype):
        self.name, self.nest, self.operands, self.out_dtype = name, nest, operands, out_dtype
        self._check(nest, out_dtype)
        self.kept = [a for a in nest.kept if _loops(nest.domain[a])]
        self.reduced = [a for a in nest.reduced if _loops(nest.domain[a])]
        self.scalars = [v for v, value in enumerate(nest.values) if isinstance(value, Scalar)]
        self.position = {a: k for k, a in enumerate(self.kept)}
        self.users = {}
        self.reductions = [v for v, value in enumerate(nest.values) if isinstance(value, Reduce)]
        self.outside = self._accumulators_outside()

    def _check(self, nest, out_dtype):
        for value in nest.values:
            if value.dtype not in C_TYPES:
                raise Unsupported(f"a value of dtype {value.dtype}")
            if isinstance(value, Apply):
                if value.op not in OPS_C:
                    raise Unsupported(f"{value.op} has no C form")
                if value.dtype not in FLOATS + ("bool",) and value.op not in INTEGER_OPS:
                    raise Unsupported(f"{value.op} -> {value.dtype} has no C form here")
            if isinstance(value, Reduce) and value.dtype not in FLOATS:
                raise Unsupported(f"{value.op} of {value.dtype} values")
        if out_dtype not in C_TYPES:
            raise Unsupported(f"result dtype {out_dtype}")

    # placement -----------------------------------------------------------------------

    def _depth(self, v: int) -> int:
        """How many kept loops a value needs around it (0: computed once a call)."""
        kept = [self.position[a] for a in self.nest.axes[v] if a in self.position]
        return 1 + max(kept) if kept else 0

    def _inner(self, v: int) -> bool:
        return any(a in self.reduced for a in self.nest.axes[v])

    def _accumulators_outside(self) -> bool:
        """Reduced loops outside the kept ones: when the innermost axis is kept (the
        reductions would otherwise walk memory across it), every reduction stands
        alone, and nothing after them reads the reduced axes."""
        nest = self.nest
        if not self.reductions or not self.kept or not self.reduced:
            return False
        if max(self.kept) < max(self.reduced):
            return False
        after = self._cone([nest.result], lambda v: isinstance(nest.values[v], Reduce))
        return not nest.checks and not any(self._inner(v) for v in after) and not any(
            self._reads_reduction(nest.values[r].arg) for r in self.reductions) and all(
            self._depth(r) == len(self.kept) for r in self.reductions)

    def _reads_reduction(self, v: int) -> bool:
        return any(isinstance(self.nest.values[u], Reduce) for u in self._cone([v]))

    def _cone(self, targets, stop=lambda v: False) -> list:
        """The values `targets` need (themselves included), inputs first; a value for
        which `stop` holds is listed but not looked through."""
        order, seen = [], set()
        stack = [(t, False) for t in reversed(targets)]
        while stack:
            v, expanded = stack.pop()
            if expanded:
                order.append(v)
                continue
            if v in seen:
                continue
            seen.add(v)
            stack.append((v, True))
            if not stop(v):
                stack += [(a, False) for a in reversed(_args(self.nest.values[v])) if a not in seen]
        return order

    # text ----------------------------------------------------------------------------

    def function(self) -> CFunction:
        nest = self.nest
        used = sorted({v.operand for v in nest.values if isinstance(v, Load)})
        params = [f"void *in{k}" for k in used] + ["void *out"]
        scratch = ()
        if self.outside:
            params.append("double *acc")
            scratch = (_times(len(self.reductions), self._kept_size()), "float64")
        sizes = sorted({d for d in nest.domain if ix.is_symbolic(d)})
        params += [f"int64_t {d}" for d in sizes]
        params += [f"{C_TYPES[nest.values[v].dtype]} n{k}" for k, v in enumerate(self.scalars)]
        lines = [f"int {self.name}({', '.join(params)}) {{"]
        lines += [f"    const {C_TYPES[self.operands[k].dtype]} *a{k} = "
                  f"(const {C_TYPES[self.operands[k].dtype]} *)in{k};" for k in used]
        lines.append(f"    {C_TYPES[self.out_dtype]} *o = ({C_TYPES[self.out_dtype]} *)out;")
        if 0 in nest.domain:
            lines.append("    return 0;  /* an empty domain: nothing to do */")
        else:
            body = self._accumulated_outside() if self.outside else self._kept_loops(0, set())
            lines += _indent(body, 4) + ["    return 0;"]
        lines.append("}")
        return CFunction(self.name, "\n".join(lines) + "\n", tuple(used), scratch,
                         tuple(sizes), tuple(nest.values[v] for v in self.scalars))

    def _kept_loops(self, depth: int, defined: set) -> list:
        """The values of this depth, then the next kept loop around the deeper ones; at
        the innermost depth, the store."""
        # every value that is not computed inside a reduced loop, the ones those need too
        wanted = [v for v in self._cone([self.nest.result])
                  if not self._inner(v) and self._depth(v) == depth and v not in defined]
        lines = []
        for v in wanted:
            defined.add(v)
            lines += self._reduction(v) if isinstance(self.nest.values[v], Reduce) else (
                self._define(v))
        lines += self._checks(depth)
        if depth < len(self.kept):
            axis = self.kept[depth]
            inner = self._kept_loops(depth + 1, defined)
            return lines + [self._for(axis)] + _indent(inner, 4) + ["}"]
        return lines + self._store()

    def _store(self) -> list:
        result = self.nest.result
        target = f"o[{self._index(ix.flatten(self.nest.store, self.nest.out_shape))}]"
        if not self._inner(result):
            return [f"{target} = {self._name(result)};"]
        return self._reduced_loops(self._cone([result], lambda v: not self._inner(v)),
                                   [f"{target} = {self._name(result)};"])

    def _reduction(self, v: int) -> list:
        value = self.nest.values[v]
        init, take = REDUCTIONS[value.op]
        acc = f"acc{v}"
        acc_type = "double" if value.op == "sum" else C_TYPES[value.dtype]
        step = take.format(acc=acc, v=self._name(value.arg))
        body = self._reduced_loops(self._cone([value.arg], lambda u: not self._inner(u)),
                                   [f"{acc} = {step};"])
        return [f"{acc_type} {acc} = {init};"] + body + [
            f"{C_TYPES[value.dtype]} {self._name(v)} = ({C_TYPES[value.dtype]}){acc};"]

    def _reduced_loops(self, cone: list, innermost: list) -> list:
        """Loops over the reduced axes, each value of `cone` that varies over them in
        the innermost loop among its axes, then `innermost`."""
        inner = [v for v in cone if self._inner(v)]
        levels = {v: max(self.reduced.index(a) for a in self.nest.axes[v] if a in self.reduced)
                  for v in inner}
        lines = []
        for depth, axis in enumerate(self.reduced):
            body = []
            for v in inner:
                if levels[v] == depth:
                    body += self._define(v)
            lines.append((axis, body))
        text = innermost
        for axis, body in reversed(lines):
            text = [self._for(axis)] + _indent(body + text, 4) + ["}"]
        return text

    def _accumulated_outside(self) -> list:
        """acc[k * K + p] = init; for reduced: for kept: acc += ...; for kept: epilogue."""
        nest, K = self.nest, self._kept_size()
        p = self._index(ix.flatten([ix.var(a, nest.domain[a]) for a in self.kept],
                                   [nest.domain[a] for a in self.kept]))
        lines = []
        for k, r in enumerate(self.reductions):
            init, _ = REDUCTIONS[nest.values[r].op]
            lines.append(f"for (int64_t p = 0; p < {K}; p++) acc[{_times(k, K)} + p] = {init};")
        inner, defined = [], set()
        for k, r in enumerate(self.reductions):
            arg = nest.values[r].arg
            for v in self._cone([arg]):
                if v not in defined:
                    defined.add(v)
                    inner += self._define(v)
            _, take = REDUCTIONS[nest.values[r].op]
            at = f"acc[{_times(k, K)} + {p}]"
            inner.append(f"{at} = {take.format(acc=at, v=self._name(arg))};")
        loops = self.reduced + self.kept
        for axis in reversed(loops):
            inner = [self._for(axis)] + _indent(inner, 4) + ["}"]
        lines += inner
        epilogue = []
        for k, r in enumerate(self.reductions):
            t = C_TYPES[nest.values[r].dtype]
            epilogue.append(f"{t} {self._name(r)} = ({t})acc[{_times(k, K)} + {p}];")
        done = set(self.reductions)
        for v in self._cone([nest.result], lambda u: u in done):
            if v not in done:
                epilogue += self._define(v)
        target = f"o[{self._index(ix.flatten(nest.store, nest.out_shape))}]"
        epilogue.append(f"{target} = {self._name(nest.result)};")
        for axis in reversed(self.kept):
            epilogue = [self._for(axis)] + _indent(epilogue, 4) + ["}"]
        return lines + epilogue

    def _checks(self, depth) -> list:
        lines = []
        for check in self.nest.checks:
            if self._depth(check.value) == depth:
                name = self._name(check.value)
                lines.append(f"if ({name} < 0 || {name} >= {check.depth}) return 1;")
        return lines

    def _kept_size(self):
        """The kept loops' points: an int, or source over symbolic sizes."""
        sizes = [self.nest.domain[a] for a in self.kept]
        count, names = ix.product(sizes)
        return count if not names else ix.size_source(sizes)

    def _for(self, axis: int) -> str:
        return f"for (int64_t i{axis} = 0; i{axis} < {self.nest.domain[axis]}; i{axis}++) {{"

    def _index(self, e: ix.Affine) -> str:
        return ix.render(e, lambda a: f"i{a}", "/")

    def _name(self, v: int) -> str:
        value = self.nest.values[v]
        if isinstance(value, Scalar):
            return f"n{self.scalars.index(v)}"
        return _literal(value.value, value.dtype) if isinstance(value, Number) else f"v{v}"

    def _define(self, v: int) -> list:
        value, t = self.nest.values[v], C_TYPES[self.nest.values[v].dtype]
        if isinstance(value, (Number, Scalar)):
            return []
        if isinstance(value, Load):
            return [f"{t} v{v} = {self._load(value)};"]
        if isinstance(value, Position):
            return [f"int64_t v{v} = {self._index(value.expr)};"]
        if isinstance(value, Product):  # computed into the output before this kernel
            store = ix.flatten(self.nest.store, self.nest.out_shape)
            return [f"{t} v{v} = o[{self._index(store)}];"]
        args = [self._name(a) for a in value.args]
        return [f"{t} v{v} = {OPS_C[value.op](value.dtype, *args)};"]

    def _load(self, load: Load) -> str:
        operand = self.operands[load.operand]
        at = self._index(ix.address(load.index, operand.strides))
        read = f"a{load.operand}[{at}]"
        if not load.mask:
            return read
        conditions = " && ".join(f"({low} <= {self._index(e)} && {self._index(e)} < {high})"
                                 for e, low, high in load.mask)
        return f"(({conditions}) ? {read} : ({C_TYPES[load.dtype]})0)"


def _loops(size) -> bool:
    """Whether an axis needs a loop: a symbolic size always (it may be 1 or more)."""
    return ix.is_symbolic(size) or size > 1


def _times(k: int, size):
    """k times a size (an int, or source over symbolic sizes)."""
    if isinstance(size, int):
        return k * size
    return f"{k} * {size}" if k > 1 else ("0" if k == 0 else size)


def _args(value) -> tuple:
    if isinstance(value, Apply):
        return value.args
    if isinstance(value, Reduce):
        return (value.arg,)
    return ()


def _indent(lines: list, n: int) -> list:
    return [" " * n + line for line in lines]


def _literal(number, dtype) -> str:
    if dtype == "bool" or isinstance(number, bool):
        return "1" if number else "0"
    if dtype not in FLOATS:
        return str(int(number))
    value = float(number)
    if value != value:
        return "NAN"
    if value in (float("inf"), float("-inf")):
        return "INFINITY" if value > 0 else "(-INFINITY)"
    if dtype == "float32":
        return f"{np.float32(value).item()!r}f"
    return repr(value)
