"""The numpy backend on the O2 graph agrees with the reference backend on the raw graph.

Random graphs (tests/strategies.py) in float32 and float64, and an MLP trained for a few
SGD steps, where every step's loss and every parameter must agree. Random graphs whose
inputs hold nan and inf run on every backend (the triton one in its interpreter, on
fewer examples).
"""

import numpy as np
import pytest
from hypothesis import given, settings

import graphc as gc
from graphc.backends import blas, ccompile
from tests.conftest import BACKENDS
from tests.strategies import OP_FAMILIES, assert_close, graphs, run_reference


def _check_random_graphs(dtype, examples, families=tuple(OP_FAMILIES), options=None) -> int:
    """Checks random graphs (numpy's options as given); returns how many ran a C kernel."""
    with_c = []

    @settings(max_examples=examples)
    @given(graphs(dtype=dtype, max_ops=8, families=families))
    def check(case):
        outputs, feeds = case
        expected = run_reference(outputs, feeds)
        fn = gc.compile(outputs, backend="numpy", opt="O2", options=options)
        for _ in range(2):  # the second call reuses the first call's buffers
            actual = fn(**feeds)
            for k, (a, e) in enumerate(zip(actual, expected)):
                assert a.dtype == e.dtype, f"output {k}: dtype {a.dtype} != {e.dtype}"
                assert_close(a, e, dtype, what=f"output {k}\n{fn.source}")
        with_c.append("# C:" in fn.source)

    check()
    return sum(with_c)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_graphs_numpy_o2_vs_reference_o0(dtype):
    with_c = _check_random_graphs(dtype, examples=40)
    assert with_c >= 8 or not ccompile.available()  # C kernels are among those checked


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_graphs_without_direct_blas_calls(monkeypatch, dtype):
    # As on a NumPy whose BLAS graphc cannot call: matmuls and their epilogues are NumPy
    # calls (np.matmul, ufuncs) instead of gemm with alpha and beta.
    monkeypatch.setattr(blas, "find", lambda: None)
    _check_random_graphs(dtype, examples=15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_graphs_without_a_c_compiler(monkeypatch, dtype):
    # Every kernel as NumPy calls, none as C (backends/numpy/c.py).
    monkeypatch.setattr(ccompile, "available", lambda *_: False)
    _check_random_graphs(dtype, examples=30)


@pytest.mark.parametrize("threads", [1, 2])
def test_random_graphs_with_every_pointwise_kernel_chunked(threads):
    # The random graphs are small: chunks of one row make every fused pointwise kernel
    # of 2 or more rows run chunk by chunk, with broadcast operands, on one thread or
    # shared out to two.
    _check_random_graphs("float64", examples=30, families=("unary", "binary"),
                         options={"chunk_elements": 1, "threads": threads})


NAN_INF_EXAMPLES = {"reference": 40, "numpy": 40, "triton": 25}


@pytest.mark.parametrize("backend", BACKENDS, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_graphs_with_nan_and_inf_inputs_agree_with_the_reference(backend, dtype):
    """Wherever a nan or an inf goes in the reference, it goes on every backend: maximum,
    relu and max pass nan on, fusion's rewrites keep them."""
    @settings(max_examples=NAN_INF_EXAMPLES[backend.name])
    @given(graphs(dtype=dtype, max_ops=8, special=True))
    def check(case):
        outputs, feeds = case
        expected = run_reference(outputs, feeds)
        fn = backend.compile(outputs)
        for k, (a, e) in enumerate(zip(fn(**feeds), expected)):
            assert a.dtype == e.dtype, f"output {k}: dtype {a.dtype} != {e.dtype}"
            assert_close(a, e, dtype, what=f"output {k} of\n{gc.Graph(outputs)}")

    check()


def _mlp(dtype, sizes=(12, 16, 16, 4)):
    """softmax cross-entropy of a ReLU MLP; returns (loss, params, feeds)."""
    rng = np.random.default_rng(1)
    x = gc.input("x", ("batch", sizes[0]), dtype=dtype)
    y = gc.input("y", ("batch",), dtype="int64")
    out, params = x, []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = gc.param(f"W{i}", rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in), dtype)
        b = gc.param(f"b{i}", np.zeros(n_out), dtype)
        params += [W, b]
        out = out @ W + b
        out = gc.relu(out) if i < len(sizes) - 2 else out
    loss = gc.nn.softmax_cross_entropy(out, y)
    data = {"x": rng.standard_normal((32, sizes[0])).astype(dtype),
            "y": rng.integers(0, sizes[-1], 32)}
    return loss, params, data


@pytest.mark.parametrize("direct_blas", [True, False], ids=["blas", "no-blas"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_training_steps_agree_with_the_reference(monkeypatch, dtype, direct_blas):
    if not direct_blas:
        monkeypatch.setattr(blas, "find", lambda: None)
    runs = {}
    for backend, opt in (("reference", "O0"), ("numpy", "O2")):
        loss, params, data = _mlp(dtype)
        step = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1), backend=backend,
                          opt=opt)
        losses = [float(step(**data)) for _ in range(5)]
        runs[backend] = losses, [p.value.copy() for p in params]
    (ref_losses, ref_params), (np_losses, np_params) = runs["reference"], runs["numpy"]
    assert np_losses[-1] < np_losses[0]  # it trains
    assert_close(np_losses, ref_losses, dtype, what="losses")
    for a, e in zip(np_params, ref_params):
        assert_close(a, e, dtype, what="params after 5 steps")


def test_mlp_step_buffer_plan_beats_the_naive_plan():
    loss, params, data = _mlp("float32", sizes=(64, 128, 128, 10))
    grads = gc.grad(loss, params)
    fn = gc.compile([loss, *grads], backend="numpy")
    fn(**data)
    stats = fn.stats
    assert stats["peak_bytes"] < stats["naive_bytes"], stats
    assert stats["kernels"] > 0


def test_mlp_step_source_uses_out_in_place_and_transposed_views(monkeypatch):
    monkeypatch.setattr(ccompile, "available", lambda *_: False)  # NumPy kernels throughout
    loss, params, data = _mlp("float32")
    step = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1), backend="numpy")
    step(**data)
    src = step.source
    assert "out=" in src
    assert any(f"out={v})" in line and f"({v}," in line
               for line in src.splitlines() for v in _out_names(line)), "no in-place op"
    assert ".T," in src or ".T)" in src or "swapaxes" in src
    assert "ascontiguousarray" not in src and ".copy(" not in src


def _out_names(line):
    return [part.split(")")[0].split(",")[0] for part in line.split("out=")[1:]]
