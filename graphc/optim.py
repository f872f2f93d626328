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
from graphc.autodiff import grad
from graphc.types import promote


def sgd(loss, params, lr, momentum=0.0) -> dict:
    """p <- p - lr * g; with momentum: v <- momentum * v + g, p <- p - lr * v."""
    updates = {}
    for p, g in zip(params, grad(loss, list(params))):
        if momentum:
            velocity = _state(p, "velocity")
            g = momentum * velocity + g
            updates[velocity] = g
        updates[p] = p - lr * g
    return updates


def adam(loss, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, name="adam") -> dict:
    """Adam (Kingma & Ba): bias-corrected first and second moment estimates of g.

    The step count is a param `{name}_t`; moments are `{p.name}_m` and `{p.name}_v`."""
    t = dsl.param(f"{name}_t", np.zeros(()), promote(*(p.dtype for p in params)))
    t_new = t + 1
    correct1 = 1 - beta1 ** t_new
    correct2 = 1 - beta2 ** t_new
    updates = {t: t_new}
    for p, g in zip(params, grad(loss, list(params))):
        m, v = _state(p, "m"), _state(p, "v")
        m_new = beta1 * m + (1 - beta1) * g
        v_new = beta2 * v + (1 - beta2) * (g * g)
        step = (m_new / correct1) / (dsl.sqrt(v_new / correct2) + eps)
        updates.update({m: m_new, v: v_new, p: p - lr * step})
    return updates


def _state(p, what: str):
    """A zero param shaped like p that holds optimizer state for it."""
    return dsl.param(f"{p.name}_{what}", np.zeros_like(p.value), p.dtype)
