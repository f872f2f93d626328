"""The numpy backend's sliding-window ops (conv, its gradients, max pooling) at run time.

No Python loop over output positions: the windows of the padded input are one strided
view (`as_strided`: (N, C, *out, *kernel) over the same bytes), copied once into a
column matrix per group (im2col) and multiplied by the weights with one batched BLAS
matmul. The transposes (conv_input_grad, max_pool_grad) scatter back with one strided
add per kernel tap (a handful), the reference's loop; max pooling is one np.maximum of
strided views per tap. The generated code calls these functions with the output buffer
(EMIT in ufunc_ops.py; names in runtime.HELPERS).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from graphc.windows import pairs, tap_slices


def _padded(x, padding, value=0.0):
    if not any(padding):
        return x
    return np.pad(x, [(0, 0), (0, 0)] + pairs(padding), constant_values=value)


def window_view(xp, kernel, stride, dilation, out) -> np.ndarray:
    """The windows of the padded input xp (N, C, *spatial) as a read-only view
    (N, C, *out, *kernel): element [n, c, p, k] is xp[n, c, p * stride + k * dilation]."""
    spatial = xp.strides[2:]
    strides = xp.strides[:2] + tuple(st * s for st, s in zip(spatial, stride)) + tuple(
        st * d for st, d in zip(spatial, dilation))
    return as_strided(xp, xp.shape[:2] + tuple(out) + tuple(kernel), strides, writeable=False)


def _columns(x, kernel, out, attrs) -> np.ndarray:
    """im2col: (G, N * out positions, C / G * taps), one row a window of one group."""
    n, c, groups = x.shape[0], x.shape[1], attrs["groups"]
    windows = window_view(_padded(x, attrs["padding"]), kernel, attrs["stride"],
                          attrs["dilation"], out)
    nd = len(out)
    grouped = windows.reshape((n, groups, c // groups) + windows.shape[2:])
    # (G, N, *out, C/G, *kernel): each row of a group's matrix is one window
    order = (1, 0) + tuple(range(3, 3 + nd)) + (2,) + tuple(range(3 + nd, 3 + 2 * nd))
    return grouped.transpose(order).reshape(groups, n * math.prod(out),
                                            c // groups * math.prod(kernel))


def _weights(w, groups) -> np.ndarray:
    """(G, O / G, C / G * taps): each group's filters as rows."""
    return w.reshape(groups, w.shape[0] // groups, -1)


def _contiguous_t(a) -> np.ndarray:
    """Each matrix of a stack transposed, copied row-major: OpenBLAS's sgemm on a
    transposed narrow operand (512 x 32, read as 32 x 512) ran far slower than on the
    copy (18-76 ms against 0.06 ms, on the shared 2-core development machine), and the
    copy is small."""
    return np.ascontiguousarray(a.transpose(0, 2, 1))


def _from_groups(product, n, out, out_shape) -> np.ndarray:
    """(G, N * positions, O / G) -> (N, O, *out)."""
    groups, _, per_group = product.shape
    split = product.reshape((groups, n) + tuple(out) + (per_group,))
    nd = len(out)
    return split.transpose((1, 0, 2 + nd) + tuple(range(2, 2 + nd))).reshape(out_shape)


def _to_groups(g, groups) -> np.ndarray:
    """(N, O, *out) -> (G, N * positions, O / G): the inverse of _from_groups."""
    n, o, nd = g.shape[0], g.shape[1], g.ndim - 2
    split = g.reshape((n, groups, o // groups) + g.shape[2:])
    order = (1, 0) + tuple(range(3, 3 + nd)) + (2,)
    return split.transpose(order).reshape(groups, n * math.prod(g.shape[2:]), o // groups)


def conv(x, w, out, **attrs):
    dtype = out.dtype
    columns = _columns(x.astype(dtype, copy=False), w.shape[2:], out.shape[2:], attrs)
    product = np.matmul(columns, _contiguous_t(_weights(w.astype(dtype, copy=False),
                                                      attrs["groups"])))
    out[...] = _from_groups(product, x.shape[0], out.shape[2:], out.shape)


def conv_weight_grad(x, g, out, **attrs):
    dtype = out.dtype
    columns = _columns(x.astype(dtype, copy=False), out.shape[2:], g.shape[2:], attrs)
    cot = _to_groups(g.astype(dtype, copy=False), attrs["groups"])
    out[...] = np.matmul(_contiguous_t(cot), columns).reshape(out.shape)


def conv_input_grad(g, w, out, **attrs):
    dtype, groups, kernel = out.dtype, attrs["groups"], w.shape[2:]
    cot = _to_groups(g.astype(dtype, copy=False), groups)
    columns = np.matmul(cot, _weights(w.astype(dtype, copy=False), groups))
    n, nd, per_group = g.shape[0], len(kernel), out.shape[1] // groups
    # (G, N, *out, C/G, *kernel) -> (N, G, C/G, *out, *kernel), the windows' layout
    split = columns.reshape((groups, n) + g.shape[2:] + (per_group,) + tuple(kernel))
    order = (1, 0, 2 + nd) + tuple(range(2, 2 + nd)) + tuple(range(3 + nd, 3 + 2 * nd))
    windows = split.transpose(order).reshape((n, out.shape[1]) + g.shape[2:] + tuple(kernel))
    _scatter_taps(windows, out, kernel, attrs["stride"], attrs["dilation"], attrs["padding"])


def _scatter_taps(windows, out, kernel, stride, dilation, padding):
    """out = the sum of each window's values put back where they were read from (the
    padding cropped): one strided add per kernel tap."""
    total = _zero_padded_like(out, padding)
    nd = len(kernel)
    for tap in np.ndindex(*kernel):
        total[(Ellipsis,) + tap_slices(tap, stride, dilation, windows.shape[2:2 + nd])] += \
            windows[(Ellipsis,) + tap]
    _crop_into(out, total, padding)


def _zero_padded_like(out, padding) -> np.ndarray:
    """Zeros of out's shape padded by `padding`: out itself, zeroed, where there is none."""
    if not any(padding):
        out.fill(0)
        return out
    padded = [s + lo + hi for s, (lo, hi) in zip(out.shape[2:], pairs(padding))]
    return np.zeros(out.shape[:2] + tuple(padded), out.dtype)


def _crop_into(out, total, padding):
    if total is not out:
        out[...] = total[(Ellipsis,) + tuple(slice(lo, lo + s) for s, (lo, _) in
                                             zip(out.shape[2:], pairs(padding)))]


def _pool_taps(x, kernel, stride, padding, out):
    """The padded input (-inf in the padding) and, for each kernel tap in row-major
    order, the strided view of it that the tap reads at every output position."""
    xp = _padded(x, padding, -np.inf)
    ones = (1,) * len(kernel)
    return [xp[(Ellipsis,) + tap_slices(tap, stride, ones, out)] for tap in np.ndindex(*kernel)]


def max_pool(x, out, kernel, stride, padding):
    """The max over the taps, one np.maximum of strided views a tap (NaN propagates)."""
    taps = _pool_taps(x, kernel, stride, padding, out.shape[2:])
    np.copyto(out, taps[0])
    for tap in taps[1:]:
        np.maximum(out, tap, out=out)


def max_pool_grad(x, g, out, kernel, stride, padding):
    """Each window's cotangent added where its max was read, taps scanned in row-major
    order so the first max (or the first NaN) takes it: the reference's and torch's
    tie rule."""
    best = np.empty(g.shape, x.dtype)
    max_pool(x, best, kernel, stride, padding)
    nan_best = np.isnan(best)
    nan_best = nan_best if nan_best.any() else None
    g = g.astype(out.dtype, copy=False)
    total = _zero_padded_like(out, padding)
    targets = _pool_taps(total, kernel, stride, (0,) * len(padding), g.shape[2:])
    unclaimed = np.ones(g.shape, bool)
    for tap, target in zip(_pool_taps(x, kernel, stride, padding, g.shape[2:]), targets):
        claims = np.equal(tap, best)
        if nan_best is not None:
            claims |= nan_best & np.isnan(tap)
        claims &= unclaimed
        unclaimed ^= claims
        target += np.where(claims, g, 0)  # (np.add's where= is 3x slower here)
    _crop_into(out, total, padding)


# name in the generated code -> function
HELPERS = {"_conv": conv, "_conv_input_grad": conv_input_grad,
           "_conv_weight_grad": conv_weight_grad, "_max_pool": max_pool,
           "_max_pool_grad": max_pool_grad}
