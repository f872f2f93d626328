"""conv, max_pool and their gradients (and the composites avg_pool, global_avg_pool) against
torch: forward and backward, float32 and float64, odd sizes, a zero-size batch, NaN and
inf, groups (depthwise), dilation, strides, every padding form; check_grads on each op;
the type rules' errors. The numpy backend is checked against torch on every case; the
triton backend refuses these ops at build time, naming them."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from graphc import ir
from graphc.passes import fusion, optimize
from graphc.testing import check_grads

# (x shape, w shape, conv kwargs for graphc, the same for torch after an explicit F.pad)
CONV_CASES = {
    "2-D plain": ((2, 3, 7, 9), (5, 3, 3, 3), {}),
    "2-D stride, pairs, dilation, groups": (
        (2, 4, 7, 9), (6, 2, 3, 2),
        dict(stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2), groups=2)),
    "2-D depthwise same": ((3, 4, 5, 6), (4, 1, 3, 3), dict(padding="same", groups=4)),
    "2-D same, even kernel": ((1, 2, 6, 5), (3, 2, 2, 4), dict(padding="same")),
    "2-D valid, stride 3": ((2, 1, 8, 7), (2, 1, 2, 2), dict(padding="valid", stride=3)),
    "1-D": ((3, 3, 11), (5, 3, 3), dict(stride=2, padding=1)),
    "1-D dilated, odd sizes": ((1, 7, 13), (1, 7, 5), dict(dilation=3, padding=(4,))),
    "1-D depthwise, 129 long": ((2, 3, 129), (6, 1, 7), dict(groups=3, padding=3, stride=4)),
}


def _torch_padding(kwargs, nd):
    """(F.pad arguments or None, the conv's own padding) for graphc's padding kwarg."""
    pad = kwargs.get("padding", 0)
    if isinstance(pad, str):
        return None, pad
    if isinstance(pad, tuple) and isinstance(pad[0], tuple):
        flat = [v for pair in reversed(pad) for v in pair]  # F.pad: last axis first
        return flat, 0
    return None, pad


def torch_conv(x, w, kwargs):
    nd = x.ndim - 2
    flat, pad = _torch_padding(kwargs, nd)
    x = F.pad(x, flat) if flat else x
    fn = F.conv2d if nd == 2 else F.conv1d
    return fn(x, w, stride=kwargs.get("stride", 1), padding=pad,
              dilation=kwargs.get("dilation", 1), groups=kwargs.get("groups", 1))


def _data(shape, dtype, rng, specials=False):
    value = rng.standard_normal(shape).astype(dtype)
    if specials and value.size > 3:
        flat = value.reshape(-1)
        flat[1], flat[-2] = np.nan, np.inf
    return value


def run_both(outputs, feeds, backend):
    return gc.compile(outputs, backend=backend)(**feeds)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's
@pytest.mark.parametrize("backend", ["reference", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_and_its_gradients_match_torch(case, dtype, backend):
    x_shape, w_shape, kwargs = CONV_CASES[case]
    rng = np.random.default_rng(len(case))
    X, W, G = _data(x_shape, dtype, rng), _data(w_shape, dtype, rng), None
    x = gc.input("x", ("n",) + x_shape[1:], dtype)
    w = gc.input("w", w_shape, dtype)
    y = gc.conv(x, w, **kwargs)
    g = gc.input("g", y.shape, dtype)
    G = _data((x_shape[0],) + y.shape[1:], dtype, rng)
    gx, gw = gc.grad(gc.sum(y * g), [x, w])
    got = run_both([y, gx, gw], {"x": X, "w": W, "g": G}, backend)
    tx, tw = (torch.tensor(a, requires_grad=True) for a in (X, W))
    ty = torch_conv(tx, tw, kwargs)
    ty.backward(torch.tensor(G))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    for name, a, b in zip(("y", "dx", "dw"), got, (ty, tx.grad, tw.grad)):
        assert a.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(a, b.detach().numpy(), err_msg=name, **tol)


@pytest.mark.parametrize("backend", ["reference", "numpy"])
def test_conv_propagates_nan_and_inf_and_takes_a_zero_batch(backend):
    rng = np.random.default_rng(1)
    X, W = _data((2, 3, 6, 7), "float32", rng, specials=True), _data((4, 3, 3, 3), "float32", rng)
    x, w = gc.input("x", ("n", 3, 6, 7)), gc.param("w", W)
    y = gc.conv(x, w, padding=1)
    gw = gc.grad(gc.sum(y), w)
    got, got_w = run_both([y, gw], {"x": X}, backend)
    tw = torch.tensor(W, requires_grad=True)
    ty = F.conv2d(torch.tensor(X), tw, padding=1)
    ty.sum().backward()
    np.testing.assert_allclose(got, ty.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_w, tw.grad.numpy(), rtol=1e-4, atol=1e-4)
    assert np.isnan(got).any() and np.isnan(got_w).any()
    empty, empty_w = run_both([y, gw], {"x": np.zeros((0, 3, 6, 7), np.float32)}, backend)
    assert empty.shape == (0, 4, 6, 7) and not empty_w.any()


POOL_CASES = {
    "2-D 2x2": ((2, 3, 8, 8), dict(kernel=2), {}),
    "2-D 3x2 stride 2 padding": ((2, 3, 7, 9), dict(kernel=(3, 2), stride=2, padding=1), {}),
    "2-D overlapping windows": ((1, 2, 7, 7), dict(kernel=3, stride=1), {}),
    "1-D": ((3, 2, 13), dict(kernel=3, stride=2, padding=1), {}),
}


def torch_pool(kind, x, kwargs):
    nd = x.ndim - 2
    fn = {("max", 2): F.max_pool2d, ("max", 1): F.max_pool1d, ("avg", 2): F.avg_pool2d,
          ("avg", 1): F.avg_pool1d}[kind, nd]
    return fn(x, kwargs["kernel"], stride=kwargs.get("stride"), padding=kwargs.get("padding", 0))


def graphc_pool(kind, x, kwargs):
    fn = gc.max_pool if kind == "max" else gc.nn.avg_pool
    return fn(x, kwargs["kernel"], stride=kwargs.get("stride"), padding=kwargs.get("padding", 0))


@pytest.mark.parametrize("backend", ["reference", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pooling_and_its_gradient_match_torch(case, kind, dtype, backend):
    shape, kwargs, _ = POOL_CASES[case]
    rng = np.random.default_rng(len(case))
    # rounded values: many ties inside windows, which the gradient's tie rule decides
    X = np.round(rng.standard_normal(shape), 0).astype(dtype)
    x = gc.input("x", ("n",) + shape[1:], dtype)
    y = graphc_pool(kind, x, kwargs)
    g = gc.input("g", y.shape, dtype)
    G = _data((shape[0],) + y.shape[1:], dtype, rng)
    got_y, got_gx = run_both([y, gc.grad(gc.sum(y * g), x)], {"x": X, "g": G}, backend)
    tx = torch.tensor(X, requires_grad=True)
    ty = torch_pool(kind, tx, kwargs)
    ty.backward(torch.tensor(G))
    np.testing.assert_allclose(got_y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_gx, tx.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["reference", "numpy"])
def test_max_pool_nan_wins_and_its_gradient_goes_to_the_first_nan(backend):
    X = np.array([[[1.0, np.nan, 2.0, np.nan, -np.inf, -np.inf, np.inf, 5.0]]], np.float32)
    x = gc.input("x", (1, 1, 8))
    y = gc.max_pool(x, 4)
    got_y, got_gx = run_both([y, gc.grad(gc.sum(y * np.float32(3)), x)], {"x": X}, backend)
    np.testing.assert_array_equal(got_y, [[[np.nan, np.inf]]])
    np.testing.assert_array_equal(got_gx, [[[0, 3, 0, 0, 0, 0, 3, 0]]])
    ty = F.max_pool1d(torch.tensor(X), 4).numpy()
    np.testing.assert_array_equal(got_y, ty)


def test_global_average_pool_matches_torch():
    X = np.random.default_rng(2).standard_normal((2, 3, 5, 7)).astype(np.float32)
    x = gc.input("x", ("n", 3, 5, 7))
    got = run_both(gc.nn.global_avg_pool(x), {"x": X}, "numpy")
    want = F.adaptive_avg_pool2d(torch.tensor(X), 1).reshape(2, 3).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_finite_differences_agree_with_each_op_and_the_gradients_of_gradients():
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((2, 4, 5, 6)), "w": rng.standard_normal((6, 2, 3, 2)),
             "c": rng.standard_normal((2, 6, 3, 5))}

    def model(x, w, c):
        kw = dict(stride=(2, 1), padding=((1, 1), (0, 1)), dilation=(1, 2), groups=2)
        y = gc.conv(x, w, **kw)
        gx, gw = gc.vjp(gc.sum(y * c), [x, w], 1.0)  # conv_input_grad, conv_weight_grad
        pooled = gc.max_pool(x, (2, 3), stride=(2, 2), padding=(1, 1))
        return [gc.sum(y * y), gc.sum(gx * gx), gc.sum(gw * gw), gc.sum(pooled * pooled),
                gc.sum(gc.nn.avg_pool(x, 3, 1, 1) ** 2)]

    report = check_grads(model, feeds)
    assert set(report) == {"x", "w", "c"}


def test_conv_layers_train_their_bias_and_initialise_as_torch():
    rng = np.random.default_rng(0)
    W, b = gc.nn.init_conv("c1", 6, 8, (3, 3), rng, groups=2)
    assert W.shape == (8, 3, 3, 3) and b.shape == (8,)
    bound = 1 / np.sqrt(27)
    assert np.abs(W.value).max() <= bound and np.abs(W.value).max() > 0.8 * bound
    x = gc.input("x", ("n", 6, 5, 5))
    y = gc.nn.conv2d(x, W, b, padding=1, groups=2, activation=gc.relu)
    X = rng.standard_normal((2, 6, 5, 5)).astype(np.float32)
    want = F.relu(F.conv2d(torch.tensor(X), torch.tensor(W.value), torch.tensor(b.value),
                           padding=1, groups=2)).numpy()
    np.testing.assert_allclose(run_both(y, {"x": X}, "numpy"), want, rtol=1e-5, atol=1e-5)
    W1, b1 = gc.nn.init_conv("c2", 2, 3, 5, rng)
    y1 = gc.nn.conv1d(gc.input("s", (1, 2, 9)), W1, b1)
    assert y1.shape == (1, 3, 5) and y1.scope.name == "conv1d"


@pytest.mark.parametrize("build, message", [
    (lambda x, w: gc.conv(x, gc.param("w4", np.zeros((4, 2, 3, 3)))),
     "the input's 3 channels must be 1 x the weight's 2"),
    (lambda x, w: gc.conv(x, w, groups=2), "do not fit with groups=2"),
    (lambda x, w: gc.conv(x, gc.param("w9", np.zeros((2, 3, 9, 9)))), "is larger than the"),
    (lambda x, w: gc.conv(x, w, stride=2, padding="same"), "padding='same' needs stride 1"),
    (lambda x, w: gc.conv(x, w, padding="full"), "padding must be an int"),
    (lambda x, w: gc.conv(x, w, stride=(1, 2, 3)), "stride must be an int or 2 ints"),
    (lambda x, w: gc.conv(x, gc.param("w1", np.zeros((2, 3, 3)))), "need (N, C, *spatial)"),
    (lambda x, w: gc.conv(gc.cast(x, "int32"), w), "conv: needs float operands"),
    (lambda x, w: gc.max_pool(x, 3, padding=2), "at most half the kernel"),
    (lambda x, w: gc.max_pool(x, (2, 2, 2)), "kernel must be an int or 2 ints"),
])
def test_mistakes_name_the_op_the_shapes_and_the_line(build, message):
    x, w = gc.input("x", ("n", 3, 6, 6)), gc.param("w", np.zeros((2, 3, 3, 3)))
    with pytest.raises((gc.ShapeError, gc.DtypeError)) as info:
        build(x, w)
    assert message in str(info.value)
    assert "test_windows.py:" in str(info.value)


def test_the_triton_backend_refuses_conv_at_build_time_naming_it():
    x, w = gc.input("x", (1, 2, 4, 4)), gc.param("w", np.ones((2, 2, 3, 3)))
    f = gc.compile(gc.relu(gc.conv(x, w) + 1.0), backend="triton")
    with pytest.raises(gc.GraphcError, match="triton backend cannot generate conv on "
                                             r"f32\[1,2,4,4\], f32\[2,2,3,3\]"):
        f(x=np.ones((1, 2, 4, 4), np.float32))


def test_max_pool_has_no_second_derivative_in_its_cotangent():
    x = gc.input("x", (1, 1, 4, 4), "float64")
    g = gc.input("g", (1, 1, 2, 2), "float64")
    dx = gc.vjp(gc.max_pool(x, 2), x, g)
    with pytest.raises(gc.GradError, match="no derivative rule for max_pool_grad"):
        gc.grad(gc.sum(dx * dx), g)


def test_conv_bias_relu_is_one_kernel_on_numpy():
    """Fusion: conv is a contraction of the matmul kind, so its bias (reshaped to
    (O, 1, 1): a view of an operand) and relu join it as the kernel's epilogue."""
    rng = np.random.default_rng(4)
    W, b = gc.nn.init_conv("c", 3, 4, (3, 3), rng)
    x = gc.input("x", ("n", 3, 6, 5))
    y = gc.nn.conv2d(x, W, b, padding=1, activation=gc.relu)
    f = gc.compile(y, backend="numpy")
    X = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    got = f(x=X)
    (kernel,) = [n for n in f.graph.nodes if n.op not in ("input", "param")]
    assert kernel.op == "fused" and kernel.attrs["kind"] == "matmul"
    assert [n.op for n in kernel.body.nodes if n.op != "input"] == ["conv", "reshape", "add",
                                                                   "relu"]
    assert f.stats["kernels"] == 1 and f.kernels[0].strategy == "ufuncs"
    want = F.relu(F.conv2d(torch.tensor(X), torch.tensor(W.value), torch.tensor(b.value),
                           padding=1)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_matmul_epilogue_still_refuses_a_layout_op_on_the_product():
    """Only a view of a kernel input (a source) may sit beside the product; a reshape of
    the product itself still ends the kernel."""
    x, w = gc.input("x", (4, 4)), gc.param("w", np.ones((4, 4)))
    moved = (x @ w).T * 2.0
    assert any("would move the matmul's output" in line
               for line in fusion.explain_fusion(gc.Graph(moved)))


def test_the_text_ir_of_a_conv_training_graph_reads_back_before_and_after_o2():
    x = gc.input("x", ("n", 3, 8, 8))
    W, b = gc.nn.init_conv("c", 3, 4, (3, 3), np.random.default_rng(0))
    y = gc.max_pool(gc.nn.conv2d(x, W, b, padding="same", activation=gc.relu), 2)
    loss = gc.sum(y * y)
    graph = gc.Graph([loss] + gc.grad(loss, [W, b]))
    for g in (graph, optimize(graph, "O2")):
        text = str(g)
        assert str(ir.parse(text)) == text
    assert "kind='matmul'" in str(optimize(graph, "O2"))
