"""Normalization layers: layer, RMS, group and batch norm, built from primitives.

Each normalizes x over some axes to zero mean and unit variance (the biased variance,
mean((x - mean)^2), as torch's), x_hat = (x - mean) / sqrt(var + eps), then scales and
shifts it by a learned weight and bias when they are given. The variance is computed
from x - mean, not as E[x^2] - E[x]^2, which cancels catastrophically when |mean| >>
std. They follow torch.nn.functional's formulas (layer_norm, rms_norm, group_norm,
batch_norm), with these layouts: layer and RMS norm normalize the last `dims` axes (a
weight has their shape); group and batch norm take channels on axis 1, (N, C, ...), and a
weight of shape (C,).

Batch norm keeps running statistics, which a training step updates: `batch_norm` returns
(y, updates), the updates a mapping {running param: new value node} to merge into
gc.compile's `updates` beside the optimizer's. `BatchNorm` holds the four params.
"""

from __future__ import annotations

import numpy as np

from graphc import dsl
from graphc.errors import ShapeError
from graphc.ir import Node
from graphc.scopes import composite, scope
from graphc.types import format_shape


def _moments(x: Node, axes: tuple):
    """(mean, x - mean, biased variance) over `axes`, keeping the reduced axes as 1s."""
    mean = dsl.mean(x, axes, keepdims=True)
    centered = x - mean
    return mean, centered, dsl.mean(centered * centered, axes, keepdims=True)


def _normalized(x: Node, axes: tuple, eps: float) -> Node:
    _, centered, var = _moments(x, axes)
    return centered / dsl.sqrt(var + eps)


def _affine(y: Node, weight, bias) -> Node:
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _trailing_axes(op: str, x: Node, dims: int, weight, bias) -> tuple:
    """The last `dims` axes of x; a weight or bias must have exactly their shape."""
    if not isinstance(dims, int) or not 1 <= dims <= x.ndim:
        raise dsl.user_error(ShapeError, f"{op}: dims={dims!r} must be an int from 1 to "
                             f"x's {x.ndim} axes", [("x", x)])
    normalized = x.shape[x.ndim - dims:]
    for label, node in (("weight", weight), ("bias", bias)):
        if isinstance(node, Node) and node.shape != normalized:
            raise dsl.user_error(
                ShapeError, f"{op}: {label} {format_shape(node.shape)} must have the shape of "
                f"the normalized axes of x {format_shape(x.shape)}, {format_shape(normalized)}",
                [("x", x), (label, node)])
    return tuple(range(x.ndim - dims, x.ndim))


@composite
def layer_norm(x, weight=None, bias=None, eps=1e-5, dims=1):
    """Normalize over the last `dims` axes (torch's F.layer_norm with normalized_shape
    x.shape[-dims:]); weight and bias have those axes' shape."""
    x = dsl.lift(x)
    axes = _trailing_axes("layer_norm", x, dims, weight, bias)
    return _affine(_normalized(x, axes, eps), weight, bias)


@composite
def rms_norm(x, weight=None, eps=1e-6, dims=1):
    """x / sqrt(mean(x^2) + eps) over the last `dims` axes, times weight (torch's
    F.rms_norm; no centering, no bias)."""
    x = dsl.lift(x)
    axes = _trailing_axes("rms_norm", x, dims, weight, None)
    return _affine(x / dsl.sqrt(dsl.mean(x * x, axes, keepdims=True) + eps), weight, None)


def _channels(op: str, x: Node, weight, bias) -> int:
    """The channel count of an (N, C, ...) input; weight and bias are (C,)."""
    if x.ndim < 2 or not isinstance(x.shape[1], int):
        raise dsl.user_error(ShapeError, f"{op}: x {format_shape(x.shape)} must be (N, C, ...) "
                             "with a fixed channel count C on axis 1", [("x", x)])
    channels = x.shape[1]
    for label, node in (("weight", weight), ("bias", bias)):
        if isinstance(node, Node) and node.shape != (channels,):
            raise dsl.user_error(ShapeError, f"{op}: {label} {format_shape(node.shape)} must "
                                 f"be ({channels},), one per channel of x "
                                 f"{format_shape(x.shape)}", [("x", x), (label, node)])
    return channels


def _per_channel(v, ndim: int):
    """A (C,) weight as (1, C, 1, ...): it broadcasts onto axis 1 of an ndim-axis input,
    and has the shape of batch norm's statistics, so the fusion pass puts it in their
    reduction kernel ((C, 1, ...) broadcasts as well but is a shape that kernel lacks)."""
    return v if v is None or ndim == 2 else dsl.reshape(v, (1,) + v.shape + (1,) * (ndim - 2))


@composite
def group_norm(x, groups: int, weight=None, bias=None, eps=1e-5):
    """Normalize each group of C/groups consecutive channels of an (N, C, ...) input over
    its channels and spatial axes (torch's F.group_norm); weight and bias are (C,)."""
    x = dsl.lift(x)
    channels = _channels("group_norm", x, weight, bias)
    rest = x.shape[2:]
    if not isinstance(groups, int) or groups < 1 or channels % groups:
        raise dsl.user_error(ShapeError, f"group_norm: groups={groups!r} must divide the "
                             f"{channels} channels of x {format_shape(x.shape)}", [("x", x)])
    if not all(isinstance(d, int) for d in rest):
        raise dsl.user_error(ShapeError, f"group_norm: the spatial axes of x "
                             f"{format_shape(x.shape)} must be fixed sizes", [("x", x)])
    grouped = dsl.reshape(x, (x.shape[0], groups, channels // groups) + rest)
    y = dsl.reshape(_normalized(grouped, tuple(range(2, grouped.ndim)), eps), x.shape)
    return _affine(y, _per_channel(weight, x.ndim), _per_channel(bias, x.ndim))


def batch_norm(x, running_mean: Node, running_var: Node, weight=None, bias=None,
               training=True, momentum=0.1, eps=1e-5, name=None):
    """Batch norm of an (N, C, ...) input over every axis but the channels (torch's
    F.batch_norm). Returns (y, updates).

    training=True: y uses the batch's mean and biased variance, and updates holds the
    new running statistics, (1 - momentum) * running + momentum * batch, the variance
    unbiased (n / (n - 1), n the values per channel, as torch; a batch of one value per
    channel makes it nan, where torch refuses the batch). training=False: y uses the
    running statistics and updates is {}. `training` is a Python bool: build one graph
    for the training step and one for evaluation, sharing the params."""
    with scope(name or "batch_norm"):
        x = dsl.lift(x)
        _channels("batch_norm", x, weight, bias)
        _check_running(x, running_mean, running_var)
        axes = (0,) + tuple(range(2, x.ndim))
        if not training:
            mean, var = (_per_channel(v, x.ndim) for v in (running_mean, running_var))
            y = (x - mean) / dsl.sqrt(var + eps)
            return _affine(y, _per_channel(weight, x.ndim), _per_channel(bias, x.ndim)), {}
        mean, centered, var = _moments(x, axes)
        y = _affine(centered / dsl.sqrt(var + eps), _per_channel(weight, x.ndim),
                    _per_channel(bias, x.ndim))
        return y, _running_updates(x, axes, mean, var, running_mean, running_var, momentum)


def _check_running(x: Node, running_mean, running_var):
    channels = x.shape[1]
    for label, node in (("running_mean", running_mean), ("running_var", running_var)):
        if not isinstance(node, Node) or node.op != "param" or node.shape != (channels,):
            got = format_shape(node.shape) if isinstance(node, Node) else type(node).__name__
            raise dsl.user_error(ShapeError, f"batch_norm: {label} must be a param of shape "
                                 f"({channels},), one per channel of x "
                                 f"{format_shape(x.shape)}; got {got}", [("x", x)])


def _running_updates(x, axes, mean, var, running_mean, running_var, momentum) -> dict:
    """{running_mean: ..., running_var: ...} after one training step on this batch
    (statistics, not trained: their gradient is stopped)."""
    count = dsl.size(x, axes, x.dtype)
    unbiased = dsl.squeeze(var, axes) * (count / (count - 1))
    mean = dsl.squeeze(mean, axes)
    keep = 1 - momentum
    return {running_mean: keep * running_mean + momentum * dsl.stop_gradient(mean),
            running_var: keep * running_var + momentum * dsl.stop_gradient(unbiased)}


class BatchNorm:
    """The params of one batch norm layer over `channels` channels: weight (ones) and
    bias (zeros) to train, running_mean (zeros) and running_var (ones) that training
    steps update; named {name}_weight, {name}_bias, {name}_running_mean, ...

        bn = gc.nn.BatchNorm("bn1", 16)
        y, bn_updates = bn(x, training=True)
        step = gc.compile(loss, updates={**gc.optim.sgd(loss, bn.params + ..., lr=0.1),
                                         **bn_updates})
        y_eval, _ = bn(x, training=False)   # an evaluation graph over the same params
    """

    def __init__(self, name: str, channels: int, momentum=0.1, eps=1e-5, affine=True,
                 dtype="float32"):
        self.name, self.momentum, self.eps = name, momentum, eps
        make = lambda what, fill: dsl.param(f"{name}_{what}", np.full(channels, fill), dtype)
        self.weight = make("weight", 1.0) if affine else None
        self.bias = make("bias", 0.0) if affine else None
        self.running_mean = make("running_mean", 0.0)
        self.running_var = make("running_var", 1.0)

    @property
    def params(self) -> list:
        """The params an optimizer trains (weight and bias; not the running statistics)."""
        return [p for p in (self.weight, self.bias) if p is not None]

    def __call__(self, x, training=True):
        return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                          training, self.momentum, self.eps, name=self.name)
