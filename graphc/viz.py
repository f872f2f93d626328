"""Rendering graphs with graphviz (in progress: see issue 7)."""


def render(outputs, backward=False, fused=False, path=None, format="svg"):
    raise NotImplementedError("gc.render is not built yet")
