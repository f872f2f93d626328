"""Checks of the arguments a user hands graphc's functions where nodes are expected.

gc.compile's outputs and updates, gc.grad's y and wrt, an optimizer's params: a value of
the wrong kind (a number, an array, None, an input where a param belongs) would
otherwise fail deep inside with an AttributeError or TypeError that names neither the
argument nor what it should have been. These helpers say both.
"""

from __future__ import annotations

import reprlib


from graphc.ir import Node


def describe(value) -> str:
    """A short phrase for a value in a message: `input 'x' : f32[2,3] (made at m.py:3)`
    for a node, `a float (3.0)` or `a numpy.ndarray (array([1., 1.]))` otherwise."""
    if isinstance(value, Node):
        label = f"{value.op} {value.name!r}" if value.name else value.op
        return f"{label} : {value.type}" + (f" (made at {value.loc})" if value.loc else "")
    if value is None:
        return "None"
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else (
        f"{kind.__module__.split('.')[0]}.{kind.__qualname__}")
    article = "an" if name[0] in "aeiou" else "a"
    return f"{article} {name} ({reprlib.repr(value)})"


def node_list(value, what: str, error) -> list:
    """`value`, one node or a list or tuple of nodes, as a list of nodes; anything else
    raises `error` saying what `what` (e.g. "gc.compile: outputs") expects and got."""
    if isinstance(value, Node):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise error(f"{what} must be a graph node or a list of nodes, got {describe(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, Node):
            raise error(f"{what}[{i}] is {describe(item)}, not a graph node (gc.input, "
                        f"gc.param, or an op on them)")
    return list(value)
