"""gc.nn's normalization layers against torch.nn.functional: values and gradients on
every backend, batch norm's running statistics over several steps in both modes, the
kernels layer norm fuses to, and the errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from graphc import ops
from graphc.errors import ShapeError
from graphc.passes import optimize
from tests.torch_like import assert_like_torch

RNG = np.random.default_rng(0)


def _data(*shape, offset=0.0):
    return RNG.standard_normal(shape) * 3 + offset


@pytest.mark.parametrize("shape,dims", [((5, 7), 1), ((2, 3, 4), 2), ((1, 1), 1), ((0, 7), 1)])
def test_layer_norm_like_torch(shape, dims, backend):
    normalized = shape[len(shape) - dims:]
    arrays = {"x": _data(*shape), "g": _data(*normalized), "b": _data(*normalized)}
    assert_like_torch(backend, lambda x, g, b: gc.nn.layer_norm(x, g, b, dims=dims),
                      lambda x, g, b: F.layer_norm(x, normalized, g, b), arrays)


def test_layer_norm_without_affine_and_far_from_zero_like_torch(backend):
    # a mean of 1e4 beside a spread of 3: E[x^2] - E[x]^2 would lose the variance
    arrays = {"x": _data(4, 129, offset=1e4)}
    assert_like_torch(backend, lambda x: gc.nn.layer_norm(x, eps=1e-3),
                      lambda x: F.layer_norm(x, (129,), eps=1e-3), arrays, rtol=1e-7)


def test_rms_norm_like_torch(backend):
    arrays = {"x": _data(3, 2, 7), "g": _data(7)}
    assert_like_torch(backend, lambda x, g: gc.nn.rms_norm(x, g, eps=1e-6),
                      lambda x, g: F.rms_norm(x, (7,), g, eps=1e-6), arrays)


@pytest.mark.parametrize("shape,groups", [((2, 6, 5), 3), ((3, 4, 2, 3), 4), ((2, 4), 1)])
def test_group_norm_like_torch(shape, groups, backend):
    arrays = {"x": _data(*shape), "g": _data(shape[1]), "b": _data(shape[1])}
    assert_like_torch(backend, lambda x, g, b: gc.nn.group_norm(x, groups, g, b),
                      lambda x, g, b: F.group_norm(x, groups, g, b), arrays)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 2, 2)])
def test_batch_norm_trains_and_evaluates_like_torch(shape, backend):
    momentum, eps = 0.3, 1e-4
    bn = gc.nn.BatchNorm("bn", shape[1], momentum=momentum, eps=eps, dtype="float64")
    bn.weight.value, bn.bias.value = _data(shape[1]), _data(shape[1])
    x, r = gc.input("x", shape, "float64"), gc.input("r", shape, "float64")
    y, updates = bn(x, training=True)
    assert set(updates) == {bn.running_mean, bn.running_var}
    train = backend.compile([y] + gc.grad(gc.sum(y * r), [x] + bn.params), updates=updates)
    y_eval, none = bn(x, training=False)
    assert none == {}
    evaluate = backend.compile(y_eval)
    weight, bias = (torch.tensor(p.value, requires_grad=True) for p in bn.params)
    running = [torch.zeros(shape[1], dtype=torch.float64),
               torch.ones(shape[1], dtype=torch.float64)]
    for step in range(3):
        X, R = _data(*shape, offset=step), RNG.standard_normal(shape)
        got = train(x=X, r=R)
        xt = torch.tensor(X, requires_grad=True)
        want = F.batch_norm(xt, *running, weight, bias, True, momentum, eps)
        weight.grad = bias.grad = None
        (want * torch.tensor(R)).sum().backward()
        for value, expected in zip(got, [want, xt.grad, weight.grad, bias.grad]):
            np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(bn.running_mean.value, running[0].numpy(), rtol=1e-12)
        np.testing.assert_allclose(bn.running_var.value, running[1].numpy(), rtol=1e-12)
    X = _data(*shape)
    want = F.batch_norm(torch.tensor(X), *running, weight, bias, False, momentum, eps)
    np.testing.assert_allclose(evaluate(x=X), want.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(bn.running_var.value, running[1].numpy(), rtol=1e-12)


def test_batch_norm_with_a_symbolic_batch_and_no_affine():
    x = gc.input("x", ("batch", 2))
    mean, var = gc.param("m", np.zeros(2)), gc.param("v", np.ones(2))
    y, updates = gc.nn.batch_norm(x, mean, var, momentum=1.0)
    step = gc.compile(y, updates=updates)
    X = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]], np.float32)
    np.testing.assert_allclose(step(x=X), F.batch_norm(torch.tensor(X), None, None,
                                                       training=True).numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(mean.value, [3.0, 6.0])
    np.testing.assert_allclose(var.value, [4.0, 16.0])  # unbiased: n / (n - 1) = 3/2


def test_batch_norm_running_statistics_are_not_trained():
    bn = gc.nn.BatchNorm("bn", 3)
    x = gc.input("x", (4, 3))
    y, _ = bn(x)
    assert bn.params == [bn.weight, bn.bias]
    assert [p.name for p in (bn.running_mean, bn.running_var)] == ["bn_running_mean",
                                                                   "bn_running_var"]
    with pytest.raises(gc.GradError):
        gc.grad(gc.sum(y), bn.running_mean)  # the batch's statistics, not the running ones


def _kernels(outputs):
    """The ops the O2 pipeline leaves: kernels and the plain ops that stay (not views)."""
    graph = optimize(gc.Graph(outputs), "O2")
    return [n for n in graph.nodes if n.op not in ("input", "param", "const")
            and not ops.has(n.op, "view")]


def test_layer_norm_forward_fuses_to_one_kernel():
    x = gc.input("x", ("batch", 64))
    g, b = gc.param("g", np.ones(64)), gc.param("b", np.zeros(64))
    kernels = _kernels([gc.nn.layer_norm(x, g, b)])
    assert [(n.op, n.attrs.get("kind")) for n in kernels] == [("fused", "reduction")]


def test_layer_norm_backward_to_its_input_fuses_to_one_kernel():
    # the whole of d sum(layer_norm(x) * w) / dx, forward recomputed inside: one kernel
    x, w = gc.input("x", ("batch", 64)), gc.input("w", ("batch", 64))
    kernels = _kernels([gc.grad(gc.sum(gc.nn.layer_norm(x) * w), x)])
    assert [(n.op, n.attrs.get("kind")) for n in kernels] == [("fused", "reduction")]


def test_normalization_errors_name_the_shapes():
    x = gc.input("x", ("batch", 6))
    with pytest.raises(ShapeError, match=r"layer_norm: weight \(5,\) must have the shape of "
                                         r"the normalized axes of x \(batch, 6\), \(6,\)"):
        gc.nn.layer_norm(x, gc.param("g", np.ones(5)))
    with pytest.raises(ShapeError, match="group_norm: groups=4 must divide the 6 channels"):
        gc.nn.group_norm(x, 4)
    with pytest.raises(ShapeError, match=r"batch_norm: running_var must be a param of "
                                         r"shape \(6,\)"):
        gc.nn.batch_norm(x, gc.param("m", np.zeros(6)), gc.param("v", np.ones(3)))
    with pytest.raises(ShapeError, match="dims=3 must be an int from 1 to x's 2 axes"):
        gc.nn.rms_norm(x, dims=3)


def test_the_other_norms_and_activations_fuse_to_one_kernel_each():
    x = gc.input("x", ("batch", 6, 5))
    bn = gc.nn.BatchNorm("bn", 6)
    kernels = {
        "rms_norm": [gc.nn.rms_norm(x, gc.param("w", np.ones(5)))],
        "layer_norm_2d": [gc.nn.layer_norm(x, dims=2)],
        "batch_norm_train": [bn(x)[0]], "batch_norm_eval": [bn(x, training=False)[0]],
        "masked_softmax": [gc.nn.softmax(x, mask=gc.input("m", ("batch", 6, 5), "bool"))],
        "silu": [gc.nn.silu(x)], "gelu": [gc.nn.gelu(x)],
    }
    for name, outputs in kernels.items():
        # size (the count a symbolic batch holds) is a scalar op of its own
        found = [n.attrs.get("kind") for n in _kernels(outputs) if n.op != "size"]
        assert found in (["reduction"], ["pointwise"]), (name, found)


def test_a_nan_or_inf_spoils_only_its_own_row_as_in_torch(backend):
    data = np.array([[1, 2, np.nan, 4], [1, 2, 3, 4.0], [np.inf, 0, 0, 0]])
    x = gc.input("x", ("n", 4), "float64")
    out = backend.run(gc.nn.layer_norm(x), x=data)
    np.testing.assert_allclose(out, F.layer_norm(torch.tensor(data), (4,)).numpy(),
                               rtol=1e-12)  # nan where torch has nan
