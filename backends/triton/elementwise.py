"""Triton expressions for the op table's elementwise ops, numbers and reductions.

`ELEMENTWISE[op](em, dtype, *args)` is the expression of one op on argument
expressions that the lowering has already cast as ops.evaluate casts them (`dtype` is
the result's); `em` writes helper temporaries (`em.var(text)`). Triton's core language
has no tanh, log1p or pow, so those use accurate closed forms.

NaN goes where NumPy and torch send it: relu, sign, maximum, minimum and max pass it on
(Triton's tl.maximum and tl.max let a number win unless told otherwise).
"""

from __future__ import annotations

import numpy as np

TL_DTYPE = {"float32": "tl.float32", "float64": "tl.float64", "int32": "tl.int32",
            "int64": "tl.int64", "bool": "tl.int1",
            "int8": "tl.int8"}   # not a graphc dtype: a max of bools accumulates in it
POINTER_TYPE = {"float32": "*fp32", "float64": "*fp64", "int32": "*i32", "int64": "*i64",
                "bool": "*i1"}


def _log1p(em, t, x):
    # Goldberg's trick: exact where 1 + x rounds, accurate to an ulp elsewhere (and
    # log1p(inf) = inf, where the trick would give inf / inf).
    u = em.var(f"1 + {x}")
    return (f"tl.where({u} == 1, {x}, tl.where({u} == float('inf'), {u}, "
            f"tl.log({u}) * {x} / ({u} - 1)))")


def _expm1(em, x):
    e = em.var(f"tl.exp({x})")
    return f"tl.where({e} == 1, {x}, tl.where({e} == 0, -1.0, ({e} - 1) * {x} / tl.log({e})))"


def _tanh(em, t, x):
    m = em.var(_expm1(em, f"-2 * tl.abs({x})"))           # tanh|x| = -m / (2 + m)
    # (x itself at zero: tanh(-0.0) is -0.0)
    return f"tl.where({x} == 0, {x}, tl.where({x} < 0, 1.0, -1.0) * {m} / (2 + {m}))"


def _sigmoid(em, t, x):
    e = em.var(f"tl.exp(-tl.abs({x}))")                    # never overflows
    return f"tl.where({x} >= 0, 1 / (1 + {e}), {e} / (1 + {e}))"


def _pow(em, t, x, y):
    # C's and NumPy's pow: |x|**y, negated for an odd integer y and an x of negative sign
    # (-0.0 too); nan for a finite x < 0 and a non-integer y; 1 for y == 0, for x == 1,
    # and for x == -1 with y = +-inf. Each condition is on one operand only (nested wheres,
    # no `&` of a scalar and a block: the interpreter cannot combine those).
    r = em.var(f"tl.exp({y} * tl.log(tl.abs({x})))")
    whole = em.var(f"tl.floor({y}) == {y}")
    odd = em.var(f"{whole} & (tl.floor({y} * 0.5) * 2 != {y})")
    negative = em.var(f"({x} < 0) | (1 / {x} < 0)")                # 1 / -0.0 is -inf
    value = em.var(f"tl.where({odd}, tl.where({negative}, -{r}, {r}), {r})")
    finite_negative = f"({x} < 0) & ({x} > float('-inf'))"
    value = em.var(f"tl.where({whole}, {value}, "
                   f"tl.where({finite_negative}, float('nan'), {value}))")
    value = em.var(f"tl.where(tl.abs({y}) == float('inf'), "
                   f"tl.where({x} == -1, 1.0, {value}), {value})")
    return f"tl.where({y} == 0, 1.0, tl.where({x} == 1, 1.0, {value}))"


def _round_half_even(em, t, x):
    # floor(x) + 1 where the fraction x - floor(x) (exact) is over a half, or is a half
    # and floor(x) is odd; a zero result keeps x's sign (x * 0), as rint's does. nan and
    # +-inf: their fraction is nan, so floor(x), itself.
    f = em.var(f"tl.floor({x})")
    d = em.var(f"{x} - {f}")
    odd = em.var(f"{f} - 2 * tl.floor({f} * 0.5) != 0")
    up = em.var(f"tl.where({d} > 0.5, 1.0, tl.where({d} == 0.5, tl.where({odd}, 1.0, 0.0), 0.0))")
    r = em.var(f"({f} + {up}).to({TL_DTYPE[t]})")
    return f"tl.where({r} == 0, {x} * 0, {r})"


def _mod(em, t, a, b):
    # NumPy's floating mod: fmod, moved by b where its sign is not b's, a zero of b's
    # sign; nested wheres on one condition each (see _pow)
    m = em.var(f"{a} % {b}")
    zero = f"tl.where({b} < 0, -0.0, 0.0).to({TL_DTYPE[t]})"
    return f"tl.where({m} == 0, {zero}, tl.where(({m} < 0) != ({b} < 0), {m} + {b}, {m}))"


def cast(x: str, have: str, want: str) -> str:
    """x (of dtype `have`) as `want`: for tiles and accumulators, which the lowering's
    own casts do not reach."""
    if have == want:
        return x
    return f"{x} != 0" if want == "bool" else f"{x}.to({TL_DTYPE[want]})"


ELEMENTWISE = {
    "neg": lambda em, t, x: f"-{x}",
    "exp": lambda em, t, x: f"tl.exp({x})",
    "log": lambda em, t, x: f"tl.log({x})",
    "log1p": _log1p,
    "sqrt": lambda em, t, x: f"tl.sqrt({x})",
    "abs": lambda em, t, x: f"tl.abs({x})",
    "sign": lambda em, t, x: (f"tl.where({x} > 0, 1, tl.where({x} < 0, -1, "   # NaN: NaN
                              f"tl.where({x} != {x}, {x}, 0))).to({TL_DTYPE[t]})"),
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "relu": lambda em, t, x: f"tl.where({x} <= 0, 0, {x})",          # NaN stays NaN
    "step": lambda em, t, x: f"({x} > 0).to({TL_DTYPE[t]})",
    "cast": lambda em, t, x: cast(x, None, t),
    "add": lambda em, t, a, b: f"{a} + {b}",
    "sub": lambda em, t, a, b: f"{a} - {b}",
    "mul": lambda em, t, a, b: f"{a} * {b}",
    "div": lambda em, t, a, b: f"{a} / {b}",
    "pow": _pow,
    "maximum": lambda em, t, a, b: f"tl.maximum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    "minimum": lambda em, t, a, b: f"tl.minimum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    "gt": lambda em, t, a, b: f"{a} > {b}",
    "ge": lambda em, t, a, b: f"{a} >= {b}",
    "lt": lambda em, t, a, b: f"{a} < {b}",
    "le": lambda em, t, a, b: f"{a} <= {b}",
    "eq": lambda em, t, a, b: f"{a} == {b}",
    "ne": lambda em, t, a, b: f"{a} != {b}",
    "where": lambda em, t, c, a, b: f"tl.where({c}, {a}, {b})",
    # --- issue 14's elementwise ops (h-elem) ---
    "sin": lambda em, t, x: f"tl.sin({x})",
    "cos": lambda em, t, x: f"tl.cos({x})",
    "erf": lambda em, t, x: f"tl.erf({x})",
    "floor": lambda em, t, x: f"tl.floor({x})",
    "tan": lambda em, t, x: f"tl.sin({x}) / tl.cos({x})",      # no tl.tan
    "ceil": lambda em, t, x: f"tl.ceil({x})",
    "trunc": lambda em, t, x: f"tl.where({x} < 0, tl.ceil({x}), tl.floor({x}))",
    "round": _round_half_even,
    "reciprocal": lambda em, t, x: f"1 / {x}",
    "rsqrt": lambda em, t, x: f"1 / tl.sqrt({x})",             # tl.rsqrt is approximate
    "square": lambda em, t, x: f"{x} * {x}",
    "fmod": lambda em, t, a, b: f"{a} % {b}",                   # a float % is C's fmod
    "mod": _mod,
    "isnan": lambda em, t, x: f"{x} != {x}",
    "isinf": lambda em, t, x: f"tl.abs({x}.to(tl.float64)) == float('inf')",
    "isfinite": lambda em, t, x: f"tl.abs({x}.to(tl.float64)) < float('inf')",  # nan: false
    "logical_not": lambda em, t, x: f"{x} == 0",
    # wheres, not & and |: the interpreter cannot combine a scalar and a block with those
    "logical_and": lambda em, t, a, b: f"tl.where({a} != 0, {b} != 0, False)",
    "logical_or": lambda em, t, a, b: f"tl.where({a} != 0, True, {b} != 0)",
    "logical_xor": lambda em, t, a, b: f"({a} != 0) != ({b} != 0)",
}


def literal(value, dtype: str) -> str:
    """A number as a 0-d Triton value of `dtype`."""
    value = np.asarray(value).item()
    if dtype == "bool":
        text = repr(bool(value))
    elif isinstance(value, float) and not np.isfinite(value):
        text = f"float('{value}')"
    else:
        text = repr(float(value) if dtype.startswith("float") else int(value))
    return f"tl.full([], {text}, {TL_DTYPE[dtype]})"


# --- reductions ---------------------------------------------------------------------------
# reduction -> (one step of the looped path, the reduction of a tile along its rows).
# max lets NaN win, as NumPy and torch do (tl.max and a plain tl.maximum let a number win
# over NaN).
COMBINE = {
    "sum": ("{acc} + {v}", "tl.sum({tile}, axis=1)"),
    "max": ("tl.maximum({acc}, {v}, propagate_nan=tl.PropagateNan.ALL)",
            "tl.reduce({tile}, 1, _max_propagating_nan)"),
    # --- issue 14's reductions (h-elem) ---
    "min": ("tl.minimum({acc}, {v}, propagate_nan=tl.PropagateNan.ALL)",
            "tl.reduce({tile}, 1, _min_propagating_nan)"),
    "prod": ("{acc} * {v}", "tl.reduce({tile}, 1, _product)"),
}
# Defined once at the top of every generated module, for the kernels that use it.
PRELUDE = """@triton.jit
def _max_propagating_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _min_propagating_nan(a, b):
    return tl.minimum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _product(a, b):
    return a * b
"""


def accumulator_dtype(dtype: str) -> str:
    return "int8" if dtype == "bool" else dtype     # a max of bools, as int8


def identity(op: str, dtype: str) -> str:
    """What a reduction starts from (and what masked lanes contribute)."""
    if op in NEUTRAL:
        return NEUTRAL[op]
    highest = op == "min"                   # max starts from the lowest value, min the highest
    if dtype == "bool":
        return "1" if highest else "0"
    if dtype.startswith("float"):
        return "float('inf')" if highest else "float('-inf')"
    info = np.iinfo(np.dtype(dtype))
    return str(info.max if highest else info.min)


NEUTRAL = {"sum": "0", "prod": "1"}        # whatever the dtype
