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
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Var:
    """Loop variable number `axis` of a domain, ranging over [0, size)."""
    axis: int
    size: int

    @property
    def bounds(self) -> tuple:
        return 0, max(self.size - 1, 0)


@dataclass(frozen=True)
class Div:
    """floor(expr / divisor), an atom."""
    expr: "Affine"
    divisor: int

    @property
    def bounds(self) -> tuple:
        low, high = self.expr.bounds
        return low // self.divisor, high // self.divisor


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


def var(axis: int, size: int) -> Affine:
    """The loop variable of an axis; an axis of size 1 (or 0) only ever indexes 0."""
    return ZERO if size <= 1 else Affine(((Var(axis, size), 1),), 0)


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
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def flatten(index: tuple, shape: tuple) -> Affine:
    """The row-major position of a multi-index in `shape`."""
    return add(*(scale(e, s) for e, s in zip(index, row_major_strides(shape))))


def unflatten(flat: Affine, shape: tuple) -> tuple:
    """The multi-index of `shape` at a row-major position (an empty shape has no
    elements: every index is 0)."""
    if 0 in shape:
        return tuple(ZERO for _ in shape)
    return tuple(mod(floordiv(flat, s), d) if d > 1 else ZERO
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
