"""Index arithmetic: the integer expressions that say where a loop nest reads and writes.

Every index is kept in one normal form, an `Affine` sum  c0 + c1*a1 + c2*a2 + ...  of
atoms with integer coefficients. An atom is a loop variable (`Var`, ranging over
[0, size)) or a floor division or remainder of an Affine by a constant (`Div`, `Mod`),
which only reshapes that regroup axes need. Building an expression simplifies it at
once, using the ranges of the variables:

    (i*4 + j) // 4  ->  i        (when 0 <= j < 4)
    (i*4 + j) %  4  ->  j
    x // 1 -> x,  x % 1 -> 0

so a reshape that splits what another merged costs no division in the generated code.
Indices are never negative (masked lanes of a block may run past the end, still >= 0),
so C's truncating division and Python's floor division agree on them.

Renderers print an expression with `render(expr, name_of_var, floordiv)`, and ask
`coefficient(expr, var)` for the stride of a variable (None where it sits inside a
division): that is how contiguity and vectorization are decided.

A size may be symbolic: a name (a str, the generated code's name of a symbolic dim,
known only at run time, never 0: a binding with a dim of 0 gets a build of its own). A
variable over a symbolic size has no upper bound here, so no simplification assumes
one; a stride, a divisor or a remainder that would depend on a symbolic size raises
`Unsupported` (generic code takes sizes as loop bounds only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class Unsupported(Exception):
    """Why a kernel has no loop nest (one line); the backend then does it another way."""


@dataclass(frozen=True)
class Var:
    """Loop variable number `axis` of a domain, ranging over [0, size)."""
    axis: int
    size: int | str       # a str: a symbolic size, bound at run time

    @property
    def bounds(self) -> tuple:
        if isinstance(self.size, str):
            return 0, math.inf
        return 0, max(self.size - 1, 0)


@dataclass(frozen=True)
class Div:
    """floor(expr / divisor), an atom."""
    expr: "Affine"
    divisor: int

    @property
    def bounds(self) -> tuple:
        low, high = self.expr.bounds
        return low // self.divisor, high if high == math.inf else high // self.divisor


@dataclass(frozen=True)
class Mod:
    """expr mod divisor, an atom."""
    expr: "Affine"
    divisor: int

    @property
    def bounds(self) -> tuple:
        low, high = self.expr.bounds
        if 0 <= low and high < self.divisor:
            return low, high
        return 0, self.divisor - 1


@dataclass(frozen=True)
class Affine:
    """const + sum(coef * atom for atom, coef in terms); terms sorted, no zero coef."""
    terms: tuple = ()
    const: int = 0

    @property
    def bounds(self) -> tuple:
        low = high = self.const
        for atom, coef in self.terms:
            a, b = atom.bounds
            low += min(coef * a, coef * b)
            high += max(coef * a, coef * b)
        return low, high

    @property
    def atoms(self) -> tuple:
        return tuple(atom for atom, _ in self.terms)

    def is_const(self) -> bool:
        return not self.terms


def _key(atom) -> tuple:
    """A total order on atoms, so equal sums have equal terms: variables first."""
    if isinstance(atom, Var):
        return (0, atom.axis, atom.size)
    return (1 if isinstance(atom, Div) else 2, repr(atom))


def _make(coefs: dict, const: int) -> Affine:
    terms = tuple(sorted(((a, c) for a, c in coefs.items() if c), key=lambda t: _key(t[0])))
    return Affine(terms, const)


def lit(value: int) -> Affine:
    return Affine((), int(value))


ZERO = lit(0)


def var(axis: int, size) -> Affine:
    """The loop variable of an axis; an axis of size 1 (or 0) only ever indexes 0 (a
    symbolic size may be 1 at run time: its variable then only ever is 0)."""
    if not isinstance(size, str) and size <= 1:
        return ZERO
    return Affine(((Var(axis, size), 1),), 0)


def add(*exprs: Affine) -> Affine:
    coefs, const = {}, 0
    for e in exprs:
        const += e.const
        for atom, coef in e.terms:
            coefs[atom] = coefs.get(atom, 0) + coef
    return _rejoin(coefs, const)


def _rejoin(coefs: dict, const: int) -> Affine:
    """(e // d) * d * c + (e % d) * c is e * c: a split axis flattened back."""
    for atom, coef in list(coefs.items()):
        if not isinstance(atom, Mod) or not coef:
            continue
        whole = Div(atom.expr, atom.divisor)
        if coefs.get(whole) == coef * atom.divisor:
            del coefs[atom], coefs[whole]
            return add(_make(coefs, const), scale(atom.expr, coef))
    return _make(coefs, const)


def scale(e: Affine, k: int) -> Affine:
    if k == 0:
        return ZERO
    return Affine(tuple((a, c * k) for a, c in e.terms), e.const * k)


def _split(e: Affine, d: int) -> tuple:
    """(the part of e that is a multiple of d, divided by d; the rest)."""
    whole, rest = {}, {}
    for atom, coef in e.terms:
        (whole if coef % d == 0 else rest)[atom] = coef // d if coef % d == 0 else coef
    return _make(whole, e.const // d), _make(rest, e.const % d)


def floordiv(e: Affine, d: int) -> Affine:
    if d == 1:
        return e
    whole, rest = _split(e, d)
    low, high = rest.bounds
    if 0 <= low and high < d:  # the rest never reaches d: it adds nothing
        return whole
    return add(whole, Affine(((Div(rest, d), 1),), 0))


def mod(e: Affine, d: int) -> Affine:
    if d == 1:
        return ZERO
    _, rest = _split(e, d)
    low, high = rest.bounds
    if 0 <= low and high < d:
        return rest
    return Affine(((Mod(rest, d), 1),), 0)


# --- whole indices: one expression per dim of a shape ------------------------------------

def row_major_strides(shape) -> tuple:
    """Element strides of a C-contiguous array of `shape`; a symbolic size may only
    lead (no stride may depend on one: Unsupported)."""
    strides, acc, symbolic = [], 1, None
    for d in reversed(shape):
        if symbolic is not None:
            raise Unsupported(f"a stride that depends on the symbolic size {symbolic}")
        strides.append(acc)
        if isinstance(d, str):
            symbolic = d
        else:
            acc *= d
    return tuple(reversed(strides))


def is_symbolic(size) -> bool:
    return isinstance(size, str)


def product(shape) -> tuple:
    """The element count of a shape as (product of its int sizes, its symbolic sizes
    sorted): equal for equal counts at every binding."""
    ints = [d for d in shape if not isinstance(d, str)]
    return math.prod(ints), tuple(sorted(d for d in shape if isinstance(d, str)))


def size_source(shape) -> str:
    """The element count of a shape as source (C and Python alike): `64`, `8 * _dim_batch`."""
    count, names = product(shape)
    if not names:
        return str(count)
    return " * ".join(([str(count)] if count != 1 else []) + list(names))


def flatten(index: tuple, shape: tuple) -> Affine:
    """The row-major position of a multi-index in `shape`."""
    return add(*(scale(e, s) for e, s in zip(index, row_major_strides(shape))))


def unflatten(flat: Affine, shape: tuple) -> tuple:
    """The multi-index of `shape` at a row-major position (an empty shape has no
    elements: every index is 0)."""
    if 0 in shape:
        return tuple(ZERO for _ in shape)
    # A symbolic size can only lead (row_major_strides) and needs no remainder: a
    # position in the shape is below its element count, so its quotient by the leading
    # stride is below the leading size.
    return tuple(floordiv(flat, s) if isinstance(d, str) else
                 mod(floordiv(flat, s), d) if d > 1 else ZERO
                 for s, d in zip(row_major_strides(shape), shape))


def address(index: tuple, strides: tuple, offset: int = 0) -> Affine:
    """Where element `index` of a strided array lies, in elements from its base."""
    return add(lit(offset), *(scale(e, s) for e, s in zip(index, strides)))


def substitute(e: Affine, at: dict) -> Affine:
    """e with each loop variable whose axis is in `at` replaced by at[axis], simplified
    again (so a flattened index unflattened into a domain's variables folds back)."""
    parts = [lit(e.const)]
    for atom, coef in e.terms:
        if isinstance(atom, Var):
            parts.append(scale(at.get(atom.axis, Affine(((atom, 1),), 0)), coef))
        else:
            inner = substitute(atom.expr, at)
            split = floordiv if isinstance(atom, Div) else mod
            parts.append(scale(split(inner, atom.divisor), coef))
    return add(*parts)


def coefficient(e: Affine, axis: int) -> int | None:
    """The stride of loop variable `axis` in e: 0 if e does not read it, None if it
    reads it only through a division or remainder."""
    direct = sum(c for a, c in e.terms if isinstance(a, Var) and a.axis == axis)
    if any(axis in axes_of(a.expr) for a, _ in e.terms if not isinstance(a, Var)):
        return None
    return direct


def axes_of(e: Affine) -> frozenset:
    """The loop variables an expression reads."""
    found = set()
    stack = [e]
    while stack:
        for atom, _ in stack.pop().terms:
            if isinstance(atom, Var):
                found.add(atom.axis)
            else:
                stack.append(atom.expr)
    return frozenset(found)


def render(e: Affine, name, floordiv_op: str = "/") -> str:
    """The expression as source: `name(axis)` names a loop variable; `floordiv_op` is
    how the language divides non-negative integers ("/" in C, "//" in Python)."""
    parts = []
    for atom, coef in e.terms:
        if isinstance(atom, Var):
            text = name(atom.axis)
        else:
            inner = render(atom.expr, name, floordiv_op)
            op = floordiv_op if isinstance(atom, Div) else "%"
            text = f"({inner}) {op} {atom.divisor}" if atom.expr.terms[1:] or atom.expr.const \
                else f"{inner} {op} {atom.divisor}"
            text = f"({text})"
        parts.append(text if coef == 1 else f"{text} * {coef}")
    if e.const or not parts:
        parts.append(str(e.const))
    return " + ".join(parts).replace("+ -", "- ")
