"""Composites and losses, built from primitives (so autodiff and fusion see through them).

Losses take the mean over the batch (the leading axis) and return a scalar. A loss
compares prediction and target element for element and never broadcasts them: a (batch, 1)
prediction against a (batch,) target would average over (batch, batch), so it is a
ShapeError naming both shapes. A target given as a plain number is that value everywhere.

Each composite builds its nodes in a scope of its own (graphc/scopes.py), named after it or
by its `name=` argument, so a picture draws it as one box; mlp builds each layer in a scope
layer1, layer2, ..., its params included.

Also here: the normalization layers (graphc/normalization.py), attention (softmax with a
mask, scaled dot-product and multi-head attention, sinusoidal positions) and
`gc.nn.init`, initial values for params (graphc/initializers.py).
"""

from __future__ import annotations

import numpy as np

from graphc import dsl, random
from graphc import initializers as init  # noqa: F401  (gc.nn.init)
from graphc.dsl import exp, log, log1p, maximum, where
from graphc.errors import DtypeError, ShapeError, UsageError
from graphc.ir import Node
from graphc.normalization import (  # noqa: F401  (gc.nn's normalization layers)
    BatchNorm, batch_norm, group_norm, layer_norm, rms_norm)
from graphc.scopes import composite, scope
from graphc.ops import swap_last_two
from graphc.types import format_shape, is_float


@composite
def softplus(x):
    """log(1 + e^x) in the stable form max(x, 0) + log1p(e^-|x|): no overflow for any x.

    maximum, not relu: at x = 0 its derivative is 1/2 (a tie splits), |x|'s is 0, so the
    gradient there is sigmoid(0) = 1/2 as it should be (relu'(0) = 0 would give 0)."""
    return maximum(x, 0.0) + log1p(exp(-dsl.abs(x)))


@composite
def leaky_relu(x, alpha=0.01):
    return where(x > 0, x, x * alpha)


@composite
def prelu(x, alpha: Node):
    """Leaky ReLU whose slope `alpha` is a node (usually a param), so it is learned."""
    return leaky_relu(x, alpha)


@composite
def maxout(x, pieces: int, axis=-1):
    """Max over groups of `pieces` consecutive units along `axis` (the last by default)."""
    axis = axis + x.ndim if axis < 0 else axis
    units = x.shape[axis]
    if not isinstance(units, int) or units % pieces:
        raise dsl._shape_error(f"maxout: dim {axis} of {format_shape(x.shape)} is not a "
                               f"multiple of {pieces}")
    grouped = dsl.reshape(x, x.shape[:axis] + (units // pieces, pieces) + x.shape[axis + 1:])
    return dsl.max(grouped, axis=axis + 1)


@composite
def logsumexp(x, axis=-1, keepdims=False):
    """log(sum(exp(x))) shifted by the max, so large inputs do not overflow."""
    shift = dsl.max(x, axis=axis, keepdims=True)
    # An infinite max (a fully masked row of -inf, or a +inf) would make x - shift nan:
    # shift by 0 there, as torch does. The shift cancels, so no other value changes.
    shift = where(dsl.abs(shift) < np.inf, shift, 0.0)
    # The shift cancels in value, so its gradient is zero too: say so, and the backward
    # pass is softmax alone, without the max's tie mask.
    shift = dsl.stop_gradient(shift)
    total = dsl.sum(exp(x - shift), axis=axis, keepdims=True)
    out = log(total) + shift
    return out if keepdims else dsl.squeeze(out, axis)


@composite
def log_softmax(x, axis=-1):
    return x - logsumexp(x, axis=axis, keepdims=True)


@composite
def softmax(x, axis=-1, mask=None):
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max.

    mask: a bool value that broadcasts onto x, True where x takes part. Masked entries
    get weight 0 (as if x were -inf there), and so does every entry of a row that is
    masked entirely: such a row is all zeros, not nan, with zero gradient."""
    if mask is None:
        shifted = exp(x - dsl.stop_gradient(dsl.max(x, axis=axis, keepdims=True)))
        return shifted / dsl.sum(shifted, axis=axis, keepdims=True)
    return _masked_softmax(dsl.lift(x), _bool_mask("softmax", dsl.lift(x), mask), axis)


def _bool_mask(op: str, x: Node, mask) -> Node:
    mask = dsl.lift(mask)
    if mask.dtype != "bool":
        raise dsl.user_error(DtypeError, f"{op}: mask must be bool (True where x takes "
                             f"part), got {mask.dtype}", [("x", x), ("mask", mask)])
    return mask


def _masked_softmax(x: Node, keep: Node | None, axis: int) -> Node:
    """Softmax where `keep` is false (or x is -inf) weighs 0, and an all-masked row is 0.
    Masked entries are -inf before exp, never exp'd and then dropped by a where: a large
    masked x would make exp inf there, and inf * 0 a nan gradient."""
    if keep is not None:
        x = where(keep, x, -np.inf)
    shift = dsl.max(x, axis=axis, keepdims=True)
    shift = dsl.stop_gradient(where(dsl.abs(shift) < np.inf, shift, 0.0))  # a -inf row
    weights = exp(x - shift)
    total = dsl.sum(weights, axis=axis, keepdims=True)
    return weights / where(total > 0, total, 1.0)


@composite
def silu(x):
    """x * sigmoid(x) (swish)."""
    return x * dsl.sigmoid(x)


@composite
def gelu(x, approximate="none"):
    """Gaussian error linear unit, as torch's F.gelu: approximate="none" (the default) is
    exact, x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); approximate="tanh" is 0.5 x (1 +
    tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate not in ("none", "tanh"):
        raise dsl.user_error(UsageError, f"gelu: approximate={approximate!r}; choose "
                             "'none' (exact, erf) or 'tanh'")
    x = dsl.lift(x)
    if approximate == "none":
        return 0.5 * x * (1.0 + dsl.erf(x * (1.0 / np.sqrt(2.0))))
    inner = np.sqrt(2.0 / np.pi) * (x + 0.044715 * (x * x * x))
    return 0.5 * x * (1.0 + dsl.tanh(inner))


@composite
def dropout(x, p: float, key: Node, training=True):
    """Inverted dropout, as torch's F.dropout: while training, each element is zeroed with
    probability p and the others are scaled by 1/(1-p), so the expected value keeps;
    otherwise x itself. The mask is one draw from `key` (gc.random: put {key:
    gc.random.next(key)} in the step's updates for a fresh mask each step, and give each
    dropout a key of its own, gc.random.split). training: a Python bool (the graph is
    built for one mode) or a scalar bool node (a gc.input fed at each call), so one model
    serves a training step and an evaluation function over the same params. The gradient
    goes through the same mask node as the forward value (one draw, stored once)."""
    x = dsl.lift(x)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise dsl.user_error(UsageError, f"dropout: p must be a number in [0, 1), got {p!r} "
                             "(p is the probability of zeroing an element)", [("x", x)])
    if not is_float(x.dtype):
        raise dsl.user_error(DtypeError, f"dropout: x must be float, got {x.dtype}",
                             [("x", x)])
    if not isinstance(training, (bool, Node)) or (isinstance(training, Node) and (
            training.dtype != "bool" or training.shape != ())):
        raise dsl.user_error(UsageError, "dropout: training must be a Python bool or a "
                             "scalar bool node (gc.input('training', (), 'bool')), got "
                             f"{training!r}", [("x", x)])
    if training is False or p == 0:
        return x
    keep = random.bernoulli(key, 1.0 - p, x.shape)
    dropped = where(keep, x * (1.0 / (1.0 - p)), 0.0)
    return dropped if training is True else where(training, dropped, x)


def _same_shape(loss: str, prediction, target, names=("prediction", "target")) -> tuple:
    """(prediction, target) as nodes of one shape; a mismatch raises at the user's line."""
    number = not isinstance(target, Node) and np.ndim(target) == 0
    prediction = dsl.lift(prediction)
    target = dsl.lift(target, prediction)
    if number:
        return prediction, target
    if target.shape != prediction.shape:
        raise dsl.user_error(
            ShapeError, f"{loss}: {names[0]} {format_shape(prediction.shape)} and {names[1]} "
            f"{format_shape(target.shape)} differ in shape; a loss compares them element "
            "for element and does not broadcast one onto the other (reshape one)",
            [(names[0], prediction), (names[1], target)])
    return prediction, target


@composite
def mse(prediction, target):
    prediction, target = _same_shape("mse", prediction, target)
    return dsl.mean((prediction - target) ** 2)


@composite
def binary_cross_entropy_with_logits(logits, target):
    """-[y log s(z) + (1-y) log(1-s(z))] written as softplus(z) - y z (seed 001's form)."""
    logits, target = _same_shape("binary_cross_entropy_with_logits", logits, target,
                                 ("logits", "target"))
    if target.dtype != logits.dtype:
        target = dsl.cast(target, logits.dtype)
    return dsl.mean(softplus(logits) - target * logits)


@composite
def softmax_cross_entropy(logits, labels):
    """Mean over the batch of -log softmax(logits)[label]. `labels` are int class indices,
    of the logits' shape without its last axis, or float probabilities of the logits'
    shape."""
    logits = dsl.lift(logits)
    labels = _class_labels(logits, dsl.lift(labels))
    per_example = logsumexp(logits, axis=-1) - dsl.sum(logits * labels, axis=-1)
    return dsl.mean(per_example)


def _class_labels(logits: Node, labels: Node) -> Node:
    """Labels as probabilities of the logits' shape: class indices become one-hot rows."""
    operands = [("logits", logits), ("labels", labels)]
    classes = logits.shape[:-1]
    if labels.dtype in ("int32", "int64"):
        if labels.shape != classes:
            raise dsl.user_error(
                ShapeError, f"softmax_cross_entropy: class-index labels "
                f"{format_shape(labels.shape)} must have the logits' shape "
                f"{format_shape(logits.shape)} without its last axis, {format_shape(classes)}",
                operands)
        return dsl.one_hot(labels, logits.shape[-1], logits.dtype)
    if not is_float(labels.dtype):
        raise dsl.user_error(
            DtypeError, f"softmax_cross_entropy: labels are {labels.dtype}; they must be "
            "integer class ids (int32 or int64) or float probabilities", operands)
    if labels.shape == classes:  # most likely class ids declared without dtype=
        raise dsl.user_error(
            DtypeError, f"softmax_cross_entropy: labels {labels.type} have the shape of "
            f"class ids but are {labels.dtype}: class ids are integers, declare them with "
            f"dtype=\"int64\" (gc.input(name, shape, dtype=\"int64\")); float labels are "
            f"probabilities of the logits' shape {format_shape(logits.shape)}", operands)
    return _same_shape("softmax_cross_entropy", logits, labels, ("logits", "labels"))[1]


@composite
def dense(x, W, b=None, activation=None):
    """activation(x @ W + b)."""
    return _affine(x, W, b, activation)


def _affine(x, W, b, activation):
    out = x @ W
    if b is not None:
        out = out + b
    return activation(out) if activation else out


def init_dense(name: str, n_in: int, n_out: int, rng: np.random.Generator):
    """He-initialised weight and zero bias params named {name}_W and {name}_b."""
    W = dsl.param(f"{name}_W", rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in))
    b = dsl.param(f"{name}_b", np.zeros(n_out))
    return W, b


def mlp(x, sizes, activation=dsl.relu, rng=None, name="layer"):
    """A multilayer perceptron with layer sizes [n_in, hidden..., n_out]; linear output.

    Returns (output node, list of params) with params named layer1_W, layer1_b, ...; each
    layer's nodes and params are in a scope named layer1, layer2, ..."""
    rng = rng if rng is not None else np.random.default_rng(0)
    params, out = [], x
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
        with scope(f"{name}{i}"):
            W, b = init_dense(f"{name}{i}", n_in, n_out, rng)
            params += [W, b]
            last = i == len(sizes) - 1
            out = _affine(out, W, b, None if last else activation)
    return out, params


# --- sliding windows (h-conv): conv layers, their initialiser, average pooling -------------

@composite
def conv2d(x, W, b=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """activation(conv(x, W) + b): x (N, C, H, W), W (O, C / groups, KH, KW), b (O,)."""
    return _conv_layer(x, W, b, stride, padding, dilation, groups, activation)


@composite
def conv1d(x, W, b=None, stride=1, padding=0, dilation=1, groups=1, activation=None):
    """activation(conv(x, W) + b): x (N, C, L), W (O, C / groups, K), b (O,)."""
    return _conv_layer(x, W, b, stride, padding, dilation, groups, activation)


def _conv_layer(x, W, b, stride, padding, dilation, groups, activation):
    out = dsl.conv(x, W, stride=stride, padding=padding, dilation=dilation, groups=groups)
    if b is not None:  # over the channel axis: an add the fusion pass fuses
        out = out + dsl.reshape(b, (-1,) + (1,) * (out.ndim - 2))
    return activation(out) if activation else out


def init_conv(name: str, c_in: int, c_out: int, kernel, rng: np.random.Generator,
              groups: int = 1):
    """Weight {name}_W (c_out, c_in / groups, *kernel) and bias {name}_b (c_out,), drawn
    as torch's Conv layers draw them: uniform in +-1/sqrt(fan_in) (kaiming_uniform with
    a = sqrt(5)), fan_in = c_in / groups * taps."""
    kernel = (kernel,) if isinstance(kernel, int) else tuple(kernel)
    shape = (c_out, c_in // groups) + kernel
    bound = 1.0 / np.sqrt(np.prod(shape[1:]))
    W = dsl.param(f"{name}_W", rng.uniform(-bound, bound, shape))
    b = dsl.param(f"{name}_b", rng.uniform(-bound, bound, c_out))
    return W, b


@composite
def avg_pool(x, kernel, stride=None, padding=0):
    """The mean of each window, padding counted as zeros (torch's count_include_pad):
    a depthwise conv with weights 1 / taps, so its gradient is conv's."""
    x = dsl.lift(x)
    nd = x.ndim - 2
    if nd < 1 or not isinstance(x.shape[1], int):
        raise dsl._shape_error(f"avg_pool: input {format_shape(x.shape)} needs (N, C, "
                               "*spatial) with a fixed number of channels")
    kernel = (kernel,) * nd if isinstance(kernel, int) else tuple(kernel)
    weight = np.full((x.shape[1], 1) + kernel, 1.0 / np.prod(kernel))
    return dsl.conv(x, dsl.const(weight, x.dtype), stride=kernel if stride is None else stride,
                    padding=padding, groups=x.shape[1])


@composite
def global_avg_pool(x, keepdims=False):
    """The mean over every spatial axis: (N, C, *spatial) -> (N, C)."""
    x = dsl.lift(x)
    return dsl.mean(x, axis=tuple(range(2, x.ndim)), keepdims=keepdims)


# --- attention ---------------------------------------------------------------------------

@composite
def scaled_dot_product_attention(q, k, v, mask=None, causal=False, scale=None):
    """softmax(q @ k^T * scale) @ v over the last two axes: q (..., L, E), k (..., S, E),
    v (..., S, Ev) give (..., L, Ev); scale is 1/sqrt(E) unless given (torch's
    F.scaled_dot_product_attention).

    mask: bool, True where a query may attend a key, or float, added to the scores; it
    broadcasts onto (..., L, S). causal=True: query i attends keys 0..i (the lower
    triangle from the top left, as torch; L and S fixed sizes); with a bool mask too, a
    key must pass both. A query that may attend no key gets zeros (torch's math kernel
    does the same), with zero gradient. The softmax is shifted by each row's max, so
    large scores do not overflow, and it fuses to one kernel."""
    q, k, v = dsl.lift(q), dsl.lift(k), dsl.lift(v)
    depth = q.shape[-1]
    if scale is None and not isinstance(depth, int):
        raise dsl.user_error(ShapeError, f"scaled_dot_product_attention: q "
                             f"{format_shape(q.shape)} needs a fixed last axis for the "
                             "default scale 1/sqrt(E) (or give scale=)", [("q", q)])
    scale = 1.0 / np.sqrt(depth) if scale is None else scale
    scores = (q @ dsl.transpose(k, swap_last_two(k.ndim))) * scale
    keep = None
    if mask is not None:
        bool_array = not isinstance(mask, Node) and np.asarray(mask).dtype == bool
        mask = dsl.lift(mask) if bool_array else dsl.lift(mask, scores)  # scores' float
        if mask.dtype == "bool":
            keep = mask
        else:
            scores = scores + mask
    if causal:
        below = dsl.const(_lower_triangle("scaled_dot_product_attention", q, k))
        keep = below if keep is None else where(keep, below, False)
    return _masked_softmax(scores, keep, -1) @ v


def _lower_triangle(op: str, q: Node, k: Node) -> np.ndarray:
    queries, keys = q.shape[-2], k.shape[-2]
    if not (isinstance(queries, int) and isinstance(keys, int)):
        raise dsl.user_error(ShapeError, f"{op}: causal attention needs fixed sequence "
                             f"lengths, got q {format_shape(q.shape)} and k "
                             f"{format_shape(k.shape)}", [("q", q), ("k", k)])
    return np.tril(np.ones((queries, keys), bool))


class MultiHeadAttention:
    """Multi-head attention over `width` features split into `heads` heads of width /
    heads each, with params {name}_Wq, _Wk, _Wv, _Wo (width, width), Xavier-uniform from
    `seed` (gc.nn.init), and zero biases {name}_bq, ... (bias=True). Inputs are (...,
    L, width); x @ W layout (torch's nn.MultiheadAttention holds the transposes).

        attn = gc.nn.MultiHeadAttention("attn1", width=64, heads=4)
        y = attn(x, causal=True)              # self-attention; attn(x, memory) attends
        params = attn.params                  # memory (key and value both)
    """

    def __init__(self, name: str, width: int, heads: int, seed=0, bias=True,
                 dtype="float32"):
        if not (isinstance(width, int) and isinstance(heads, int) and heads >= 1
                and width % heads == 0):
            raise dsl.user_error(ShapeError, f"MultiHeadAttention: heads={heads!r} must "
                                 f"divide width={width!r}")
        self.name, self.width, self.heads = name, width, heads
        self.weights = {w: dsl.param(f"{name}_W{w}", init.xavier_uniform(
            (width, width), seed=seed + i), dtype) for i, w in enumerate("qkvo")}
        self.biases = {w: dsl.param(f"{name}_b{w}", np.zeros(width), dtype)
                       for w in "qkvo"} if bias else {}

    @property
    def params(self) -> list:
        return list(self.weights.values()) + list(self.biases.values())

    def __call__(self, query, key=None, value=None, mask=None, causal=False):
        """query (..., L, width) attends key (..., S, width) (default: query) and reads
        value (default: key); mask and causal as scaled_dot_product_attention's, the
        mask broadcasting onto (..., heads, L, S)."""
        key = query if key is None else key
        value = key if value is None else value
        with scope(self.name):
            q, k, v = (self._heads(self._project(x, w)) for x, w in
                       ((query, "q"), (key, "k"), (value, "v")))
            out = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)
            return self._project(self._merge(out), "o")

    def _project(self, x, w):
        return _affine(dsl.lift(x), self.weights[w], self.biases.get(w), None)

    def _heads(self, x: Node) -> Node:
        """(..., L, width) -> (..., heads, L, width / heads)."""
        split = dsl.reshape(x, x.shape[:-1] + (self.heads, self.width // self.heads))
        return dsl.transpose(split, _swap_axes(split.ndim, -3, -2))

    def _merge(self, x: Node) -> Node:
        """(..., heads, L, d) -> (..., L, heads * d)."""
        moved = dsl.transpose(x, _swap_axes(x.ndim, -3, -2))
        return dsl.reshape(moved, moved.shape[:-2] + (self.width,))


def _swap_axes(ndim: int, a: int, b: int) -> tuple:
    perm = list(range(ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return tuple(perm)


def sinusoidal_positions(length: int, width: int, base=10000.0, dtype="float32") -> Node:
    """The (length, width) const of Vaswani et al.'s positional encodings: column 2i is
    sin(pos / base^(2i / width)), column 2i + 1 its cos; add it to (..., length, width)
    embeddings."""
    angles = np.arange(length)[:, None] / base ** (np.arange(0, width, 2) / width)
    table = np.zeros((length, width))
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, :width // 2])
    return dsl.const(table, dtype)


@composite
def embedding(ids, table):
    """The rows of `table` (vocabulary x features) at `ids` (int32/int64, any shape): a
    gather, O(features) per id, not one_hot(ids) @ table; its gradient adds each id's
    row gradient into that row (scatter_add). An id outside [-vocabulary, vocabulary)
    raises when the function runs (negative ids count from the end, as NumPy's)."""
    table = dsl.lift(table)
    if table.ndim != 2:
        raise dsl.shape_error(f"embedding: the table must be 2-D (vocabulary, features), got "
                              f"{format_shape(table.shape)}")
    return dsl.take(table, ids, 0)
