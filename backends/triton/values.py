"""Writing a loop nest's values as Triton expressions over the lanes of a block.

A kernel's program holds a block of lanes: `offs` (pointwise), `rows` x `r` (reduction),
`rm` x `rn` x `rk` (matmul), each a pseudo loop variable (`lane(name, size)`). `Lanes`
says what every domain variable is in terms of them (`at`: axis -> Affine over lanes),
how each lane prints and which mask keeps it in range. Every index of the nest is
substituted into the lanes before it is printed, so an operand read in order loads at
`offs` itself (Triton then sees contiguous loads); lanes past the end are masked on
every load and store, never clamped.

`Values.get(v)` writes value v (and what it needs, inputs first) in the current scope
of the `Emitter` and returns its expression; a scope is a loop body, whose values are
gone when it closes. Reductions and a matmul's product are `special`: the kernel
writes them and hands their expressions in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graphc.backends.lower import index as ix
from graphc.backends.lower.loops import (
    Apply, Load, LoopNest, Number, Position, Product, Reduce, Unsupported)

from .elementwise import ELEMENTWISE, literal

# Pseudo-axes for the lanes' own positions; a domain has fewer axes than this.
LANE_AXES = {"offs": 1000, "rows": 1001, "r": 1002, "rm": 1003, "rn": 1004, "rk": 1005,
             "pid_b": 1006, "pick": 1007}   # pick: the position a gather reads (indexing.py)


def lane(name: str, size: int) -> ix.Affine:
    """The lane variable `name` over [0, size) (a lane of size 1 stays a variable: a
    block has its shape even where the domain's axis does not)."""
    return ix.Affine(((ix.Var(LANE_AXES[name], max(size, 2)), 1),), 0)


class Emitter:
    """Kernel lines, with temporaries memoized by their text in nested scopes."""

    def __init__(self):
        self.lines, self.indent, self.scopes, self._count = [], 1, [{}], 0

    def line(self, text: str):
        self.lines.append("    " * self.indent + text)

    def var(self, expr: str, prefix="t") -> str:
        if expr.isidentifier() or expr.lstrip("-").isdigit():
            return expr
        for scope in self.scopes:
            if expr in scope:
                return scope[expr]
        name = self.fresh(expr, prefix)
        self.scopes[-1][expr] = name
        return name

    def fresh(self, expr: str, prefix="t") -> str:
        """A new variable holding `expr`, never shared: for a value that is reassigned
        (an accumulator), whose text says nothing about what it will hold."""
        name = f"{prefix}{self._count}"
        self._count += 1
        self.line(f"{name} = {expr}")
        return name

    def open(self, header: str):
        self.line(header)
        self.scopes.append({})
        self.indent += 1

    def close(self):
        self.scopes.pop()
        self.indent -= 1


@dataclass
class Lanes:
    at: dict                      # domain axis -> Affine over lane variables
    names: dict                   # lane name -> how it prints ("rows", "rm[:, None]")
    masks: dict = field(default_factory=dict)   # lane name -> its mask

    def name_of(self, axis: int) -> str:
        return self.names[_LANE_NAMES[axis]]

    def lanes_of(self, e: ix.Affine) -> ix.Affine:
        return ix.substitute(e, self.at)

    def text(self, e: ix.Affine) -> str:
        return ix.render(self.lanes_of(e), self.name_of, "//")

    def offset(self, e: ix.Affine, shape_lanes: tuple = ()) -> str:
        """An index as text; each lane of `shape_lanes` it does not read is added times
        0, so the result still has the block's shape (a scalar result, a broadcast row)."""
        e = self.lanes_of(e)
        read = {_LANE_NAMES.get(a) for a in ix.axes_of(e)}
        pads = [f"{self.names[name]} * 0" for name in shape_lanes if name not in read]
        return " + ".join([ix.render(e, self.name_of, "//")] + pads)

    def lanes_read(self, *exprs) -> tuple:
        """The names of the lanes these expressions read."""
        read = set().union(*(ix.axes_of(self.lanes_of(e)) for e in exprs))
        return tuple(_LANE_NAMES[a] for a in sorted(read))

    def mask_of(self, *exprs) -> list:
        """The masks of the lanes these expressions read."""
        return [self.masks[name] for name in self.lanes_read(*exprs) if name in self.masks]


_LANE_NAMES = {axis: name for name, axis in LANE_AXES.items()}


class Values:
    def __init__(self, em: Emitter, nest: LoopNest, shapes: list, lanes: Lanes):
        self.em, self.nest, self.shapes, self.lanes = em, nest, shapes, lanes
        self.special = {}        # value id -> expression (reductions, the product)
        self.done = [{}]         # scopes of value id -> expression
        self.loaded = set()      # operand indices read

    def open(self, header: str):
        self.em.open(header)
        self.done.append({})

    def close(self):
        self.em.close()
        self.done.pop()

    def get(self, v: int) -> str:
        """The expression of value v, written (with what it needs) if not yet in scope."""
        if self._lookup(v) is None:
            for u in self._missing(v):
                self.done[-1][u] = self._write(u)
        return self._lookup(v)

    def _lookup(self, v):
        if v in self.special:
            return self.special[v]
        return next((scope[v] for scope in reversed(self.done) if v in scope), None)

    def _missing(self, v) -> list:
        """The values v needs that are not in scope, itself included, inputs first (an
        explicit stack: nests may be deep; ids are in dependency order)."""
        needed, stack = set(), [v]
        while stack:
            u = stack.pop()
            if u in needed or self._lookup(u) is not None:
                continue
            needed.add(u)
            value = self.nest.values[u]
            stack += list(value.args) if isinstance(value, Apply) else []
        return sorted(needed)

    def _write(self, v: int) -> str:
        value, em = self.nest.values[v], self.em
        if isinstance(value, Number):
            return em.var(literal(value.value, value.dtype), "c")
        if isinstance(value, Load):
            return em.var(self.load(value), "v")
        if isinstance(value, Position):
            return em.var(f"({self.lanes.text(value.expr)})", "i")
        if isinstance(value, (Reduce, Product)):
            raise Unsupported(f"a {type(value).__name__.lower()} read where it is not computed")
        if value.op not in ELEMENTWISE:
            raise Unsupported(f"{value.op} has no Triton form")
        args = [self._lookup(a) for a in value.args]
        return em.var(ELEMENTWISE[value.op](em, value.dtype, *args), "v")

    def load(self, load: Load, shape_lanes: tuple = (), masks: tuple = ()) -> str:
        """tl.load of an operand at the load's index, masked to the lanes it reads (and
        to the load's own ranges: a concat's piece), then `masks`."""
        self.loaded.add(load.operand)
        address = ix.flatten(load.index, self.shapes[load.operand])
        ranges = [e for e, _, _ in load.mask]
        mask = list(masks) or self.lanes.mask_of(address, *ranges)
        for e, low, high in load.mask:
            text = self.lanes.text(e)
            mask.append(f"({low} <= {text}) & ({text} < {high})")
        # the pointers take the shape of the mask: a range may read lanes the address
        # does not (a piece of a concat one wide along its axis)
        shape_lanes = tuple(dict.fromkeys(shape_lanes + self.lanes.lanes_read(*ranges)))
        where = f", mask={' & '.join(mask)}, other=0" if mask else ""
        return f"tl.load(in{load.operand}_ptr + {self.lanes.offset(address, shape_lanes)}{where})"
