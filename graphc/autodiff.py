"""Symbolic reverse-mode differentiation (in progress: see issue 3)."""

from graphc.errors import GradError


def grad(y, wrt, seed=None, allow_disconnected=False):
    raise GradError("gc.grad is not built yet")


def vjp(y, wrt, seed, allow_disconnected=False):
    raise GradError("gc.vjp is not built yet")
