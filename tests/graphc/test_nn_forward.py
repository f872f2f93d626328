"""graphc.nn composites and losses, forward values against torch (the second oracle where
NumPy has no single answer): stability at large |x|, axes, integer and soft labels."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from graphc.errors import DtypeError, ShapeError

RNG = np.random.default_rng(0)
EXTREME = np.array([-1000.0, -50.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 50.0, 1000.0])


def t(a):
    return torch.tensor(np.asarray(a))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softplus_is_stable_at_large_magnitude(dtype, backend):
    x = gc.input("x", (len(EXTREME),), dtype)
    out = backend.run(gc.nn.softplus(x), x=EXTREME.astype(dtype))
    assert np.isfinite(out).all() and out.dtype == np.dtype(dtype)
    want = F.softplus(t(EXTREME)).numpy()  # the identity above 20: exact to rounding
    np.testing.assert_allclose(out, want, rtol=1e-6 if dtype == "float32" else 1e-14)
    assert out[-1] == 1000.0 and out[0] == 0.0


@pytest.mark.parametrize("alpha", [0.01, 0.2, -1.0])
def test_leaky_relu_like_torch(alpha, backend):
    x = gc.input("x", ("n", 3))
    v = RNG.standard_normal((4, 3)).astype(np.float32)
    out = backend.run(gc.nn.leaky_relu(x, alpha), x=v)
    np.testing.assert_allclose(out, F.leaky_relu(t(v), alpha).numpy(), rtol=1e-6)


def test_leaky_relu_with_alpha_minus_one_is_absolute_value_rectification(backend):
    # seed 001: act(z) = max(alpha z, z); alpha = -1 gives |z|
    x = gc.input("x", (len(EXTREME),), "float64")
    out = backend.run(gc.nn.leaky_relu(x, -1.0), x=EXTREME)
    np.testing.assert_array_equal(out, np.abs(EXTREME))


def test_prelu_with_a_learned_per_channel_slope_like_torch(backend):
    x = gc.input("x", ("n", 3))
    alpha = gc.param("alpha", [0.1, 0.25, -0.5])
    v = RNG.standard_normal((5, 3)).astype(np.float32)
    out = backend.run(gc.nn.prelu(x, alpha), x=v)
    np.testing.assert_allclose(out, F.prelu(t(v), t(alpha.value)).numpy(), rtol=1e-6)


@pytest.mark.parametrize("shape,pieces,axis", [((4, 6), 3, -1), ((4, 6), 2, 1),
                                               ((6, 2), 3, 0), ((2, 4, 3), 2, 1)])
def test_maxout_takes_the_max_of_consecutive_groups(shape, pieces, axis, backend):
    x = gc.input("x", shape)
    v = RNG.standard_normal(shape).astype(np.float32)
    out = backend.run(gc.nn.maxout(x, pieces, axis), x=v)
    axis = axis % len(shape)
    grouped = t(v).unflatten(axis, (shape[axis] // pieces, pieces))
    np.testing.assert_array_equal(out, grouped.amax(axis + 1).numpy())


def test_maxout_keeps_a_symbolic_batch():
    x = gc.input("x", ("batch", 6))
    y = gc.nn.maxout(x, 3)
    assert y.shape == ("batch", 2)


SOFTMAX_DATA = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -999.0],
                         [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_and_log_softmax_like_torch_even_at_1000(axis, backend):
    x = gc.input("x", ("n", 3), "float64")
    s, ls = backend.run([gc.nn.softmax(x, axis), gc.nn.log_softmax(x, axis)], x=SOFTMAX_DATA)
    np.testing.assert_allclose(s, torch.softmax(t(SOFTMAX_DATA), axis).numpy(), rtol=1e-12,
                               atol=1e-300)
    np.testing.assert_allclose(ls, torch.log_softmax(t(SOFTMAX_DATA), axis).numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(s.sum(axis), 1.0)


@pytest.mark.parametrize("axis,keepdims", [(-1, False), (0, True), ((0, 1), False), (1, True)])
def test_logsumexp_like_torch(axis, keepdims, backend):
    x = gc.input("x", ("n", 3), "float64")
    y = gc.nn.logsumexp(x, axis, keepdims)
    out = backend.run(y, x=SOFTMAX_DATA)
    want = torch.logsumexp(t(SOFTMAX_DATA), dim=axis, keepdim=keepdims).numpy()
    assert out.shape == want.shape
    np.testing.assert_allclose(out, want, rtol=1e-12)


def test_logsumexp_of_infinite_rows_like_torch(backend):
    # a fully masked row (all -inf) has logsumexp -inf, and a row holding +inf gives +inf
    data = np.array([[-np.inf, -np.inf], [np.inf, 0.0], [1.0, -np.inf]])
    x = gc.input("x", (3, 2), "float64")
    out = backend.run(gc.nn.logsumexp(x), x=data)
    np.testing.assert_array_equal(out, torch.logsumexp(t(data), dim=-1).numpy())


def test_mse_like_torch(backend):
    p, y = gc.input("p", ("n", 2)), gc.input("y", ("n", 2))
    vp, vy = RNG.standard_normal((5, 2)), RNG.standard_normal((5, 2))
    out = backend.run(gc.nn.mse(p, y), p=vp, y=vy)
    assert out.shape == () and out.dtype == np.float32
    assert out == pytest.approx(F.mse_loss(t(vp), t(vy)).item(), rel=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_cross_entropy_with_logits_like_torch(dtype, backend):
    z, y = gc.input("z", ("n",), dtype), gc.input("y", ("n",), dtype)
    targets = np.array([0, 1, 1, 0, 1, 0, 0.5, 0.25, 1.0])
    out = backend.run(gc.nn.binary_cross_entropy_with_logits(z, y), z=EXTREME.astype(dtype),
                      y=targets.astype(dtype))
    want = F.binary_cross_entropy_with_logits(t(EXTREME), t(targets)).item()
    assert np.isfinite(out) and out.dtype == np.dtype(dtype)
    assert out == pytest.approx(want, rel=1e-6)


def test_bce_takes_integer_and_python_targets(backend):
    z = gc.input("z", (3,), "float64")
    labels = gc.input("labels", (3,), "int64")
    logits = np.array([-2.0, 0.5, 3.0])
    want = F.binary_cross_entropy_with_logits(t(logits), t([0.0, 1.0, 1.0])).item()
    from_ints, from_list = backend.run([gc.nn.binary_cross_entropy_with_logits(z, labels),
                                        gc.nn.binary_cross_entropy_with_logits(z, [0, 1, 1])],
                                       z=logits, labels=np.array([0, 1, 1]))
    assert from_ints == pytest.approx(want, rel=1e-12)
    assert from_list == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("label_dtype", ["int64", "int32"])
def test_softmax_cross_entropy_with_class_indices_like_torch(label_dtype, backend):
    logits = gc.input("logits", ("n", 4), "float64")
    labels = gc.input("labels", ("n",), label_dtype)
    v = np.concatenate([RNG.standard_normal((5, 4)), [[1000.0, -1000.0, 0.0, 5.0]]])
    y = np.array([0, 3, 1, 2, 2, 1])
    out = backend.run(gc.nn.softmax_cross_entropy(logits, labels), logits=v,
                      labels=y.astype(label_dtype))
    assert np.isfinite(out)
    assert out == pytest.approx(F.cross_entropy(t(v), t(y)).item(), rel=1e-12)


def test_softmax_cross_entropy_with_probability_targets_like_torch(backend):
    logits = gc.input("logits", ("n", 3))
    probs = gc.input("probs", ("n", 3))
    v = RNG.standard_normal((4, 3)).astype(np.float32)
    p = torch.softmax(torch.tensor(RNG.standard_normal((4, 3))), -1).numpy().astype(np.float32)
    out = backend.run(gc.nn.softmax_cross_entropy(logits, probs), logits=v, probs=p)
    assert out == pytest.approx(F.cross_entropy(t(v), t(p)).item(), rel=1e-5)


# --- losses never broadcast prediction against target -------------------------------

LOSSES = {"mse": gc.nn.mse, "bce": gc.nn.binary_cross_entropy_with_logits}


@pytest.mark.parametrize("loss", LOSSES)
def test_a_loss_refuses_shapes_that_differ(loss):
    # (batch, 1) against (batch,) would broadcast to (batch, batch): mse gave 2.5, not 0.
    prediction, target = gc.input("pred", ("batch", 1)), gc.input("target", ("batch",))
    with pytest.raises(ShapeError, match=r"\(batch, 1\) and target \(batch,\) differ") as info:
        LOSSES[loss](prediction, target)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(LOSSES[loss].__name__)
    assert "pred : f32[batch,1]" in lines[1] and "target : f32[batch]" in lines[2]
    assert lines[-1].startswith("  at test_nn_forward.py:")


@pytest.mark.parametrize("loss", LOSSES)
def test_a_loss_of_matching_shapes_and_of_a_number_target(loss, backend):
    prediction, target = gc.input("pred", ("batch", 1)), gc.input("target", ("batch",))
    v = np.array([0.0, 1.0, 1.0], np.float32)
    fn = LOSSES[loss]
    outs = backend.run([fn(prediction, gc.reshape(target, ("batch", 1))), fn(prediction, 1.0)],
                       pred=v[:, None], target=v)
    want_matched, want_number = {  # torch on the same shapes, and on a target of ones
        "mse": (0.0, F.mse_loss(t(v), t(np.ones(3))).item()),
        "bce": (F.binary_cross_entropy_with_logits(t(v), t(v)).item(),
                F.binary_cross_entropy_with_logits(t(v), t(np.ones(3))).item())}[loss]
    np.testing.assert_allclose(outs, [want_matched, want_number], rtol=1e-6)


@pytest.mark.parametrize("labels,error,message", [
    (gc.input("ids", ("batch", 1), "int64"), ShapeError,
     r"class-index labels \(batch, 1\) must have the logits' shape \(batch, 3\) without "
     r"its last axis, \(batch,\)"),
    (gc.input("probs", ("batch", 2)), ShapeError, r"logits \(batch, 3\) and labels \(batch, 2\)"),
    (gc.input("ids", ("batch",)), DtypeError, r"class ids are integers, declare them with "
                                              r"dtype=\"int64\""),  # forgot dtype="int64"
    (gc.input("flags", ("batch",), "bool"), DtypeError, "labels are bool"),
], ids=["ids_shape", "probs_shape", "float_ids", "bool"])
def test_softmax_cross_entropy_checks_its_labels(labels, error, message):
    logits = gc.input("logits", ("batch", 3))
    with pytest.raises(error, match=message) as info:
        gc.nn.softmax_cross_entropy(logits, labels)
    text = str(info.value)
    assert text.startswith("softmax_cross_entropy: ") and "logits : f32[batch,3]" in text
    assert text.splitlines()[-1].startswith("  at test_nn_forward.py:")


def test_dense(backend):
    x = gc.input("x", ("n", 3))
    W = gc.param("W", RNG.standard_normal((3, 2)))
    b = gc.param("b", [0.5, -0.5])
    v = RNG.standard_normal((4, 3)).astype(np.float32)
    linear, activated, no_bias = backend.run(
        [gc.nn.dense(x, W, b), gc.nn.dense(x, W, b, gc.tanh), gc.nn.dense(x, W)], x=v)
    np.testing.assert_allclose(linear, v @ W.value + b.value, rtol=1e-5)
    np.testing.assert_allclose(activated, np.tanh(v @ W.value + b.value), rtol=1e-5)
    np.testing.assert_allclose(no_bias, v @ W.value, rtol=1e-5)


def test_mlp_builds_named_he_initialised_layers_with_a_linear_output(backend):
    x = gc.input("x", ("batch", 4))
    out, params = gc.nn.mlp(x, [4, 16, 8, 3], rng=np.random.default_rng(1))
    assert out.shape == ("batch", 3)
    assert [p.name for p in params] == ["layer1_W", "layer1_b", "layer2_W", "layer2_b",
                                        "layer3_W", "layer3_b"]
    assert [p.shape for p in params[::2]] == [(4, 16), (16, 8), (8, 3)]
    assert all(not p.value.any() for p in params[1::2])
    assert params[0].value.std() == pytest.approx(np.sqrt(2 / 4), rel=0.3)
    v = RNG.standard_normal((5, 4)).astype(np.float32)
    h = v
    for i in range(3):
        W, b = params[2 * i].value, params[2 * i + 1].value
        h = h @ W + b
        h = np.maximum(h, 0) if i < 2 else h
    np.testing.assert_allclose(backend.run(out, x=v), h, rtol=1e-4, atol=1e-6)
    # mlp's default rng is fixed: two models start from the same weights
    _, again = gc.nn.mlp(gc.input("z", (None, 4)), [4, 2])
    _, other = gc.nn.mlp(gc.input("w", (None, 4)), [4, 2])
    np.testing.assert_array_equal(again[0].value, other[0].value)
