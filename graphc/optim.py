"""Optimizers: each returns the `updates` mapping {param: new value node} for gc.compile.

    step = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1), backend=...)
    step(x=X, y=Y)   # one training step: params change in place after the call succeeds

An update is a graph like any other (built from gc.grad's gradient nodes), so it is
optimized and run by the same backends. Optimizer state (momentum velocity, Adam's
moments and step count) lives in params of its own, zero at the start, which the same
mapping updates: every new value is computed from the old values, then all are written.
The formulas follow torch.optim.SGD (no dampening) and torch.optim.Adam.
"""

from __future__ import annotations

import numpy as np

from graphc import dsl
from graphc.arguments import describe, node_list
from graphc.autodiff import grad
from graphc.errors import UsageError
from graphc.types import promote


def sgd(loss, params, lr, momentum=0.0, grads=None) -> dict:
    """p <- p - lr * g; with momentum: v <- momentum * v + g, p <- p - lr * v.

    The velocity of param p is a param `{p.name}_velocity`. grads: the gradients to
    step by, one per param (default: gc.grad(loss, params); gc.parallel.data_parallel
    gives them averaged over the workers)."""
    params = checked_params(params, "gc.optim.sgd")
    updates = {}
    for p, g in zip(params, _gradients(loss, params, grads, "sgd")):
        if momentum:
            velocity = _state(p, "velocity")
            g = momentum * velocity + g
            updates[velocity] = g
        updates[p] = p - lr * g
    return updates


def adam(loss, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, name="adam",
         grads=None) -> dict:
    """Adam (Kingma & Ba): bias-corrected first and second moment estimates of g.

    The step count is a param `{name}_t`; moments are `{p.name}_m` and `{p.name}_v`.
    Two adams in one step (param groups with their own lr) need names of their own, or
    their step counts collide (gc.compile refuses two params of one name). grads: as
    for sgd."""
    params = checked_params(params, "gc.optim.adam")
    t = dsl.param(f"{name}_t", np.zeros(()), promote(*(p.dtype for p in params)))
    t_new = t + 1
    correct1 = 1 - beta1 ** t_new
    correct2 = 1 - beta2 ** t_new
    updates = {t: t_new}
    for p, g in zip(params, _gradients(loss, params, grads, "adam")):
        m, v = _state(p, "m"), _state(p, "v")
        m_new = beta1 * m + (1 - beta1) * g
        v_new = beta2 * v + (1 - beta2) * (g * g)
        step = (m_new / correct1) / (dsl.sqrt(v_new / correct2) + eps)
        updates.update({m: m_new, v: v_new, p: p - lr * step})
    return updates


def _gradients(loss, params: list, grads, optimizer: str) -> list:
    if grads is None:
        return grad(loss, params)
    grads = node_list(grads, f"gc.optim.{optimizer}: grads", UsageError)
    if len(grads) != len(params):
        raise UsageError(f"gc.optim.{optimizer}: {len(grads)} grads for {len(params)} "
                         "params; give one gradient per param, in the same order")
    for p, g in zip(params, grads):
        if g.shape != p.shape:
            raise UsageError(f"gc.optim.{optimizer}: the gradient of param {p.name!r} "
                             f"({p.type}) is {describe(g)}; it must have the param's shape")
    return grads


def checked_params(params, where: str) -> list:
    """The params an optimizer trains, as a list: each a param, and each once (a repeat
    would get two states, and only one of its updates would be applied)."""
    params = node_list(params, f"{where}: params", UsageError)
    if not params:
        raise UsageError(f"{where}: params is empty; give the params "
                         "(gc.param nodes) that the step trains")
    seen = set()
    for p in params:
        if p.op != "param":
            raise UsageError(f"{where}: {describe(p)} is not a param "
                             "(gc.param): only params hold values that a step updates")
        if p in seen:
            raise UsageError(f"{where}: param {p.name!r} is listed twice")
        seen.add(p)
    return params


def _state(p, what: str):
    """A zero param shaped like p that holds optimizer state for it."""
    return dsl.param(f"{p.name}_{what}", np.zeros_like(p.value), p.dtype)
