"""Optimizers: each returns the `updates` mapping {param: new value node} for gc.compile.

    step = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1), backend=...)
    step(x=X, y=Y)   # one training step: params change in place after the call succeeds

An update is a graph like any other (built from gc.grad's gradient nodes), so it is
optimized and run by the same backends. Optimizer state (momentum velocity, Adam's
moments and step count) lives in params of its own, zero at the start, which the same
mapping updates: every new value is computed from the old values, then all are written.
The formulas follow torch.optim.SGD (no dampening), torch.optim.Adam and AdamW.

Every optimizer takes `grads=`, the gradients to step by, one per param (default
gc.grad(loss, params)): a transform of the gradients composes with any optimizer,

    clipped, norm = gc.optim.clip_grad_norm(gc.grad(loss, params), max_norm=1.0)
    updates = gc.optim.adamw(loss, params, lr=3e-4, grads=clipped)

and `lr` may be a number, a scalar node, or a schedule (gc.optim.schedules: a function
of the step count), for which sgd keeps a step count param `{name}_t` as adam does.
"""

from __future__ import annotations

import numpy as np

from graphc import dsl
from graphc import schedules  # noqa: F401  (gc.optim.schedules)
from graphc.arguments import describe, node_list
from graphc.autodiff import grad
from graphc.errors import UsageError
from graphc.types import promote


def sgd(loss, params, lr, momentum=0.0, weight_decay=0.0, name="sgd", grads=None) -> dict:
    """p <- p - lr * g; with momentum: v <- momentum * v + g, p <- p - lr * v.

    weight_decay adds weight_decay * p to g first (an L2 penalty, as torch.optim.SGD).
    The velocity of param p is a param `{p.name}_velocity`. grads: the gradients to
    step by, one per param (default: gc.grad(loss, params))."""
    params = checked_params(params, "gc.optim.sgd")
    updates = {}
    lr = _scheduled(lr, name, params, updates)
    for p, g in zip(params, _gradients(loss, params, grads, "sgd")):
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            velocity = _state(p, "velocity")
            g = momentum * velocity + g
            updates[velocity] = g
        updates[p] = p - lr * g
    return updates


def adam(loss, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
         name="adam", grads=None) -> dict:
    """Adam (Kingma & Ba): bias-corrected first and second moment estimates of g.

    weight_decay adds weight_decay * p to g (L2, torch.optim.Adam's; adamw decouples it).
    The step count is a param `{name}_t`; moments are `{p.name}_m` and `{p.name}_v`.
    Two adams in one step (param groups with their own lr) need names of their own, or
    their step counts collide (gc.compile refuses two params of one name). grads: as
    for sgd."""
    return _adam(loss, params, lr, (beta1, beta2), eps, (weight_decay, False), name, grads,
                 "adam")


def adamw(loss, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2,
          name="adamw", grads=None) -> dict:
    """AdamW (Loshchilov & Hutter): Adam whose weight decay is decoupled from the
    gradient, p <- p * (1 - lr * weight_decay) before Adam's step (torch.optim.AdamW; its
    state is named as adam's, the step count `{name}_t`)."""
    return _adam(loss, params, lr, (beta1, beta2), eps, (weight_decay, True), name, grads,
                 "adamw")


def _adam(loss, params, lr, betas, eps, decay, name, grads, optimizer) -> dict:
    params = checked_params(params, f"gc.optim.{optimizer}")
    (beta1, beta2), (weight_decay, decoupled) = betas, decay
    t = dsl.param(f"{name}_t", np.zeros(()), promote(*(p.dtype for p in params)))
    t_new = t + 1
    lr = lr(t) if callable(lr) else lr
    correct1 = 1 - beta1 ** t_new
    correct2 = 1 - beta2 ** t_new
    updates = {t: t_new}
    for p, g in zip(params, _gradients(loss, params, grads, optimizer)):
        if weight_decay and not decoupled:
            g = g + weight_decay * p
        m, v = _state(p, "m"), _state(p, "v")
        m_new = beta1 * m + (1 - beta1) * g
        v_new = beta2 * v + (1 - beta2) * (g * g)
        step = (m_new / correct1) / (dsl.sqrt(v_new / correct2) + eps)
        decayed = p * (1 - lr * weight_decay) if weight_decay and decoupled else p
        updates.update({m: m_new, v: v_new, p: decayed - lr * step})
    return updates


def clip_grad_norm(grads, max_norm: float) -> tuple:
    """(grads scaled so that their global 2-norm is at most max_norm, that norm before
    scaling), as torch.nn.utils.clip_grad_norm_: every gradient is multiplied by
    min(1, max_norm / (norm + 1e-6)), one factor for all, so their directions keep.
    Give the clipped list to an optimizer's grads=."""
    grads = node_list(grads, "gc.optim.clip_grad_norm: grads", UsageError)
    if not grads:
        raise UsageError("gc.optim.clip_grad_norm: grads is empty; give the gradients "
                         "(gc.grad(loss, params)) to clip")
    squares = [dsl.sum(g * g) for g in grads]
    total = squares[0]
    for square in squares[1:]:
        total = total + square
    norm = dsl.sqrt(total)
    factor = dsl.minimum(max_norm / (norm + 1e-6), 1.0)
    return [g * dsl.cast(factor, g.dtype) for g in grads], norm


def _scheduled(lr, name: str, params: list, updates: dict):
    """The lr of this step: a schedule is called on a step count param `{name}_t`, which
    `updates` advances; a number or node is the lr itself."""
    if not callable(lr):
        return lr
    t = dsl.param(f"{name}_t", np.zeros(()), promote(*(p.dtype for p in params)))
    updates[t] = t + 1
    return lr(t)


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
