"""Scopes: named groups of nodes (a layer, a loss), so that pictures can draw them as boxes.

    with gc.scope("layer1"):
        z = x @ W + b            # these nodes' .scope is layer1
        with gc.scope("act"):
            a = gc.relu(z)       # layer1/act

A node records the scope open where it was made, as it records its source line. Scopes
nest; each `with` opens a new Scope object, so two calls of one composite (two softmaxes)
are two groups even though their paths read the same. The open scope is context state
(a contextvars.ContextVar): each thread, and each asyncio task, builds in its own.

ROOT is the scope outside every `with`; its path is ().
"""

from __future__ import annotations

import contextvars
import functools
from contextlib import contextmanager


class Scope:
    """A named group inside `parent`. Compared by identity, like nodes."""

    __slots__ = ("name", "parent")

    def __init__(self, name: str, parent: "Scope | None"):
        self.name = name
        self.parent = parent

    @property
    def path(self) -> tuple:
        """The names from the outermost scope in, e.g. ("layer1", "act"); () for ROOT."""
        names, scope = [], self
        while scope.parent is not None:
            names.append(scope.name)
            scope = scope.parent
        return tuple(reversed(names))

    def __str__(self) -> str:
        return "/".join(self.path)

    def __repr__(self) -> str:
        return f"<Scope {self}>"

    def __reduce__(self):
        # ROOT unpickles as ROOT itself (code asks `scope.parent is None`; one root);
        # another scope as a new scope of that name in its parent, compared by identity
        # as before: the scopes of one pickle stay shared by the nodes that were in them.
        return "ROOT" if self is ROOT else (Scope, (self.name, self.parent))


ROOT = Scope("", None)
_open = contextvars.ContextVar("graphc_open_scope", default=ROOT)


def current() -> Scope:
    """The innermost open scope (ROOT outside every `with gc.scope(...)`)."""
    return _open.get()


@contextmanager
def scope(name: str):
    """Open a scope named `name` inside the current one; yields the new Scope."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a scope name must be an identifier, got {name!r}")
    with within(Scope(name, current())) as opened:
        yield opened


def composite(fn):
    """fn(..., name=None) builds its nodes in a scope named `name`, else fn's own name
    (how gc.nn's composites each become one box in a picture)."""
    @functools.wraps(fn)
    def in_scope(*args, name=None, **kwargs):
        with scope(name or fn.__name__):
            return fn(*args, **kwargs)
    return in_scope


@contextmanager
def within(target: Scope):
    """Make `target` the open scope (wherever it is in the tree) until the block ends."""
    token = _open.set(target)
    try:
        yield target
    finally:
        _open.reset(token)


def from_path(path: tuple, known: dict) -> Scope:
    """The scope for `path`, made once per path in `known` (a dict the caller keeps,
    keyed by (parent scope, name)): how the text form, which prints paths, reads scopes
    back. A loop, not a recursion: a path of any length reads back."""
    scope = ROOT
    for name in path:
        if (scope, name) not in known:
            known[scope, name] = Scope(name, scope)
        scope = known[scope, name]
    return scope


class Mirror:
    """Copies of forward scopes under one new scope: a gradient's nodes go to
    grad/<the path of the node they differentiate>, so the backward graph groups as the
    forward one does. One Mirror per gc.grad call keeps each copy a single object."""

    def __init__(self, root: Scope):
        self.root = root
        self._copies = {ROOT: root}

    def of(self, forward: Scope) -> Scope:
        if forward not in self._copies:
            self._copies[forward] = Scope(forward.name, self.of(forward.parent))
        return self._copies[forward]
