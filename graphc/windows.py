"""Sliding-window ops (convolution, max pooling): their type rules and reference NumPy.

The op table (graphc/ops.py) holds their rows; this module holds what those rows point
at, so the table stays one screen of rows. Layouts: x is (N, C, *spatial) (NCL for 1-D,
NCHW for 2-D), a conv's weight is (O, C / groups, *kernel) (OIHW). Padding is stored
flat, a (before, after) pair per spatial axis: (top, bottom, left, right) in 2-D.

The ops, each linear in every operand it is differentiated for, so their gradients are
each other (graphc/autodiff.py):
- conv(x, w): out[n, o, p] = sum_{c, k} x_pad[n, g*Cg + c, p*s + k*d] w[o, c, k];
- conv_input_grad(g, w): the transpose of conv in x (a transposed convolution), back to
  the input's spatial `size`;
- conv_weight_grad(x, g): the transpose of conv in w (the correlation of x with g), of
  the weight's spatial `kernel`;
- max_pool(x): the max of each window of the input padded with -inf (NaN wins: a window
  with a NaN is NaN);
- max_pool_grad(x, g): each window's cotangent routed to its max, the first in the
  window's row-major order on a tie (as torch), the first NaN where there is one. A
  window whose values are all -inf routes to its first tap even where that tap is
  padding (the cotangent is then dropped; torch gives it to the first real element).

The reference implementations loop over the kernel's taps (a handful), never over
positions: each tap is one strided slice of the padded input and one einsum.
"""

from __future__ import annotations

import math

import numpy as np

from graphc.errors import DtypeError, ShapeError
from graphc.types import TensorType, format_shape, is_float, promote


# --- geometry ----------------------------------------------------------------------------

def pairs(padding: tuple) -> list:
    """The flat padding as [(before, after), ...], one pair per spatial axis."""
    return [(padding[2 * k], padding[2 * k + 1]) for k in range(len(padding) // 2)]


def out_size(size, kernel, stride, padding, dilation) -> tuple:
    """The spatial size of a window op's output (as torch's, floor mode); an empty input
    axis gives an empty output axis."""
    return tuple((n + lo + hi - d * (k - 1) - 1) // s + 1 if n else 0
                 for n, k, s, (lo, hi), d in zip(size, kernel, stride, pairs(padding), dilation))


def tap_slices(tap, stride, dilation, out) -> tuple:
    """The slice of the padded input that kernel tap `tap` reads at every output position."""
    return tuple(slice(t * d, t * d + (s * (o - 1) + 1 if o else 0), s)
                 for t, s, d, o in zip(tap, stride, dilation, out))


def _check_geometry(op, spatial, kernel, attrs, with_dilation=True):
    nd = len(spatial)
    lengths = {"stride": nd, "padding": 2 * nd}
    if with_dilation:
        lengths["dilation"] = nd
    for name, length in lengths.items():
        if len(attrs[name]) != length:
            raise ShapeError(f"{op}: {name} {attrs[name]} needs {length} values for "
                             f"{nd} spatial dims")
    if any(s < 1 for s in attrs["stride"]) or any(d < 1 for d in attrs.get("dilation", (1,))):
        raise ShapeError(f"{op}: stride {attrs['stride']} and dilation must be >= 1")
    if any(p < 0 for p in attrs["padding"]):
        raise ShapeError(f"{op}: padding {attrs['padding']} must be >= 0")
    if not all(isinstance(n, int) for n in spatial):
        raise ShapeError(f"{op}: spatial dims {format_shape(spatial)} must be fixed sizes")
    dilation = attrs.get("dilation", (1,) * nd)
    out = out_size(spatial, kernel, attrs["stride"], attrs["padding"], dilation)
    if any(o < 1 for o, n in zip(out, spatial) if n):
        raise ShapeError(f"{op}: kernel {format_shape(tuple(kernel))} (dilation {dilation}) "
                         f"is larger than the padded input {format_shape(tuple(spatial))}")
    return out


def _float_types(op, types):
    for t in types:
        if not is_float(t.dtype):
            raise DtypeError(f"{op}: needs float operands, got "
                             f"{' and '.join(u.dtype for u in types)}")
    return promote(*(t.dtype for t in types))


def _check_conv(op, x_shape, w_shape, attrs):
    """The output spatial size of conv(x of x_shape, w of w_shape), or a ShapeError."""
    if len(x_shape) < 3 or len(w_shape) != len(x_shape):
        raise ShapeError(f"{op}: input {format_shape(x_shape)} and weight "
                         f"{format_shape(w_shape)} need (N, C, *spatial) and "
                         "(O, C / groups, *kernel) with 1 or more spatial dims")
    channels, groups = x_shape[1], attrs["groups"]
    out_channels, per_group = w_shape[0], w_shape[1]
    if not all(isinstance(d, int) for d in w_shape) or not isinstance(channels, int):
        raise ShapeError(f"{op}: channels and the weight's shape must be fixed sizes")
    if channels != per_group * groups or out_channels % groups:
        raise ShapeError(f"{op}: input {format_shape(x_shape)} and weight "
                         f"{format_shape(w_shape)} do not fit with groups={groups}: the "
                         f"input's {channels} channels must be {groups} x the weight's "
                         f"{per_group}, and {out_channels} output channels a multiple of "
                         f"{groups}")
    return _check_geometry(op, x_shape[2:], w_shape[2:], attrs)


# --- type rules ----------------------------------------------------------------------------

def infer_conv(types, attrs):
    x, w = types
    dtype = _float_types("conv", types)
    out = _check_conv("conv", x.shape, w.shape, attrs)
    return TensorType((x.shape[0], w.shape[0]) + out, dtype)


def infer_conv_input_grad(types, attrs):
    g, w = types
    dtype = _float_types("conv_input_grad", types)
    x_shape = (g.shape[0], w.shape[1] * attrs["groups"]) + tuple(attrs["size"])
    _check_transposed("conv_input_grad", x_shape, w.shape, g.shape, attrs)
    return TensorType(x_shape, dtype)


def infer_conv_weight_grad(types, attrs):
    x, g = types
    dtype = _float_types("conv_weight_grad", types)
    if len(g.shape) < 2 or not isinstance(x.shape[1] if x.ndim > 1 else None, int):
        raise ShapeError(f"conv_weight_grad: input {format_shape(x.shape)} and cotangent "
                         f"{format_shape(g.shape)} need (N, C, *spatial) layouts")
    w_shape = (g.shape[1], x.shape[1] // attrs["groups"]) + tuple(attrs["kernel"])
    _check_transposed("conv_weight_grad", x.shape, w_shape, g.shape, attrs)
    return TensorType(w_shape, dtype)


def _check_transposed(op, x_shape, w_shape, g_shape, attrs):
    """A conv gradient's operands must be those of a conv that gives `g_shape`."""
    out = _check_conv(op, x_shape, w_shape, attrs)
    want = (x_shape[0], w_shape[0]) + out
    if tuple(g_shape) != want:
        raise ShapeError(f"{op}: cotangent {format_shape(g_shape)} is not the shape "
                         f"{format_shape(want)} of conv({format_shape(x_shape)}, "
                         f"{format_shape(w_shape)})")


def infer_max_pool(types, attrs):
    (x,) = types
    _check_pool("max_pool", x, attrs)
    out = _check_geometry("max_pool", x.shape[2:], attrs["kernel"], attrs, False)
    return TensorType(x.shape[:2] + out, x.dtype)


def infer_max_pool_grad(types, attrs):
    x, g = types
    want = infer_max_pool([x], attrs)
    if g.shape != want.shape:
        raise ShapeError(f"max_pool_grad: cotangent {format_shape(g.shape)} is not the "
                         f"pool's output shape {format_shape(want.shape)}")
    return TensorType(x.shape, promote(x.dtype, g.dtype))


def _check_pool(op, x, attrs):
    if not is_float(x.dtype):
        raise DtypeError(f"{op}: needs a float operand, got {x.dtype}")
    kernel = attrs["kernel"]
    if x.ndim < 3 or len(kernel) != x.ndim - 2 or any(k < 1 for k in kernel):
        raise ShapeError(f"{op}: input {format_shape(x.shape)} needs (N, C, *spatial) "
                         f"with one kernel size >= 1 per spatial dim, got kernel {kernel}")
    if any(max(lo, hi) > k // 2 for (lo, hi), k in zip(pairs(attrs["padding"]), kernel)):
        raise ShapeError(f"{op}: padding {attrs['padding']} must be at most half the "
                         f"kernel {kernel} (as torch's)")


# --- reference semantics -------------------------------------------------------------------

def _padded(x, padding, value=0.0):
    return np.pad(x, [(0, 0), (0, 0)] + pairs(padding), constant_values=value)


def _grouped(x, groups):
    """(N, C, *s) -> (N, G, C / G, *s)."""
    return x.reshape(x.shape[0], groups, x.shape[1] // groups, *x.shape[2:])


def conv(args, attrs, shape):
    x, w = args
    groups, dtype = attrs["groups"], np.result_type(x, w)
    xg = _grouped(_padded(x.astype(dtype), attrs["padding"]), groups)
    wg = _grouped(w.astype(dtype)[None], groups)[0]          # (G, O / G, C / G, *k)
    out = np.zeros((shape[0], groups, shape[1] // groups) + shape[2:], dtype)
    for tap in np.ndindex(*w.shape[2:]):
        patch = xg[(Ellipsis,) + tap_slices(tap, attrs["stride"], attrs["dilation"], shape[2:])]
        out += np.einsum("ngc...,goc->ngo...", patch, wg[(Ellipsis,) + tap])
    return out.reshape(shape)


def conv_input_grad(args, attrs, shape):
    g, w = args
    groups, dtype = attrs["groups"], np.result_type(g, w)
    padded = [n + lo + hi for n, (lo, hi) in zip(shape[2:], pairs(attrs["padding"]))]
    gx = np.zeros((shape[0], groups, shape[1] // groups, *padded), dtype)
    gg, wg = _grouped(g.astype(dtype), groups), _grouped(w.astype(dtype)[None], groups)[0]
    for tap in np.ndindex(*w.shape[2:]):
        where = tap_slices(tap, attrs["stride"], attrs["dilation"], g.shape[2:])
        gx[(Ellipsis,) + where] += np.einsum("ngo...,goc->ngc...", gg, wg[(Ellipsis,) + tap])
    return _cropped(gx.reshape(shape[:2] + tuple(padded)), attrs["padding"])


def _cropped(x, padding):
    return x[(Ellipsis,) + tuple(slice(lo, x.shape[2 + k] - hi)
                                 for k, (lo, hi) in enumerate(pairs(padding)))]


def conv_weight_grad(args, attrs, shape):
    x, g = args
    groups, dtype = attrs["groups"], np.result_type(x, g)
    xg = _grouped(_padded(x.astype(dtype), attrs["padding"]), groups)
    gg = _grouped(g.astype(dtype), groups)
    positions = math.prod(g.shape[2:])
    flat = gg.reshape(gg.shape[:3] + (positions,))
    gw = np.zeros((groups, shape[0] // groups) + shape[1:], dtype)
    for tap in np.ndindex(*shape[2:]):
        patch = xg[(Ellipsis,) + tap_slices(tap, attrs["stride"], attrs["dilation"], g.shape[2:])]
        patch = patch.reshape(patch.shape[:3] + (positions,))
        gw[(Ellipsis,) + tap] = np.einsum("ngcp,ngop->goc", patch, flat)
    return gw.reshape(shape)


def _pool_argmax(x, attrs, out):
    """(max, tap index of the first max) of each window, by a scan over the taps: a tap
    replaces the best so far when it is larger, or a NaN where the best is not."""
    xp = _padded(x, attrs["padding"], -np.inf)
    best = np.full(out, -np.inf, x.dtype)
    index = np.zeros(out, np.int64)
    for k, tap in enumerate(np.ndindex(*attrs["kernel"])):
        value = xp[(Ellipsis,) + tap_slices(tap, attrs["stride"], (1,) * len(tap), out[2:])]
        wins = (value > best) | (np.isnan(value) & ~np.isnan(best))
        best, index = np.where(wins, value, best), np.where(wins, k, index)
    return best, index


def max_pool(args, attrs, shape):
    return _pool_argmax(args[0], attrs, shape)[0]


def max_pool_grad(args, attrs, shape):
    x, g = args
    _, index = _pool_argmax(x, attrs, g.shape)
    padded = [n + lo + hi for n, (lo, hi) in zip(shape[2:], pairs(attrs["padding"]))]
    gx = np.zeros(shape[:2] + tuple(padded), np.result_type(x, g))
    for k, tap in enumerate(np.ndindex(*attrs["kernel"])):
        where = tap_slices(tap, attrs["stride"], (1,) * len(tap), g.shape[2:])
        gx[(Ellipsis,) + where] += np.where(index == k, g, 0)
    return _cropped(gx, attrs["padding"])
