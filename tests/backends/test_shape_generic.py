"""One build for every batch size (issue 16): the numpy backend's code takes the sizes of
symbolic dims at run time, so a training step fed batch sizes 1..200 compiles its C
once and keeps one executable, with the reference interpreter's results at every size.
The compiles are counted by ccompile.stats in a fresh compile cache, so the first
build's compiles are seen and counted too (a count that could not move would prove
nothing)."""

import numpy as np
import pytest

import graphc as gc
from graphc.backends import base, ccompile
from graphc.backends.numpy.build import fixed_dims

RNG = np.random.default_rng(16)


def mlp_step(backend: str, options=None):
    """An SGD step of a 6-16-3 MLP with softmax cross-entropy, on its own params."""
    x, y = gc.input("x", ("batch", 6)), gc.input("y", ("batch",), dtype="int64")
    init = np.random.default_rng(0)
    params = [gc.param("W1", init.standard_normal((6, 16)) * 0.5), gc.param("b1", np.zeros(16)),
              gc.param("W2", init.standard_normal((16, 3)) * 0.5), gc.param("b2", np.zeros(3))]
    W1, b1, W2, b2 = params
    loss = gc.nn.softmax_cross_entropy(gc.relu(x @ W1 + b1) @ W2 + b2, y)
    step = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1), backend=backend,
                      options=options)
    return step, params


def batch(n: int) -> dict:
    return {"x": RNG.standard_normal((n, 6)).astype(np.float32), "y": RNG.integers(0, 3, n)}


def check_step_against_reference(step, params, ref, ref_params, feeds):
    """One step on both from the same params: the same loss and new params (the
    reference's params are then set to numpy's, so errors do not accumulate)."""
    loss, ref_loss = step(**feeds), ref(**feeds)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for p, q in zip(params, ref_params):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-5, atol=1e-6, err_msg=p.name)
        q.value = p.value


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty compile cache, so the first build's C is really compiled here."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if not ccompile.available():
        pytest.skip("no C compiler works here: nothing to count")


def test_batch_sizes_1_to_200_compile_once_and_match_the_reference(fresh_cache):
    step, params = mlp_step("numpy")
    ref, ref_params = mlp_step("reference")
    before = ccompile.Stats(**vars(ccompile.stats))
    check_step_against_reference(step, params, ref, ref_params, batch(1))
    first = ccompile.Stats(**vars(ccompile.stats))
    assert first.requests == before.requests + 1
    assert first.compiled_units > before.compiled_units  # the fresh cache: built here
    assert any(k.strategy in ("C loops", "gemm + C epilogue") for k in step.kernels)
    for n in range(2, 201):
        check_step_against_reference(step, params, ref, ref_params, batch(n))
    assert vars(ccompile.stats) == vars(first)  # no compile, not even a cache lookup
    assert len(step._executables) == 1 and len(ref._executables) == 1
    assert "int64_t _dim_batch" in "".join(k.extra["c_source"] or "" for k in step.kernels)


def test_a_smaller_batch_reuses_a_larger_ones_memory():
    step, _ = mlp_step("numpy")
    step(**batch(200))
    (executable,) = step._executables.values()
    grown = executable.frames.nbytes
    assert grown > 0
    for n in (3, 150, 7, 199):
        step(**batch(n))
    assert executable.frames.nbytes == grown  # the arenas only grow, and needed not to
    assert len(executable.frames.made) <= executable.frames.KEPT
    step(**batch(400))
    assert executable.frames.nbytes > grown


def test_a_zero_size_batch_has_a_build_of_its_own_and_the_references_result():
    step, params = mlp_step("numpy")
    ref, ref_params = mlp_step("reference")
    for n in (5, 0, 9, 0):
        feeds = batch(n)
        loss, ref_loss = step(**feeds), ref(**feeds)
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(ref_loss))
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
        for p, q in zip(params, ref_params):
            np.testing.assert_allclose(p.value, q.value, rtol=1e-5, atol=1e-6)
            q.value = p.value
    # builds: one for every nonzero batch, one for batch 0 (fixed_dims)
    assert len(step._executables) == 2


@pytest.mark.parametrize("c_kernels", [True, False])
def test_a_generic_build_with_nan_and_inf_inputs(c_kernels):
    x = gc.input("x", ("batch", 5))
    W = gc.param("W", RNG.standard_normal((5, 4)))
    h = gc.relu(x @ W)
    outputs = [gc.nn.logsumexp(h, axis=1), gc.max(x, axis=0), gc.sum(gc.exp(x) * 2, axis=1),
               *gc.grad(gc.mean(gc.sigmoid(h)), [x, W])]
    fn = gc.compile(outputs, options={"c_kernels": c_kernels})
    ref = gc.compile(outputs, backend="reference")
    for n in (4, 7, 1, 33):
        X = RNG.standard_normal((n, 5)).astype(np.float32)
        if n > 1:
            X[0, 1], X[1, 2], X[-1, 0] = np.nan, np.inf, -np.inf
        for got, want in zip(fn(x=X), ref(x=X)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert len(fn._executables) == 1


def test_what_each_backend_fixes():
    graph = gc.Graph([gc.sum(gc.input("x", ("batch", 3)))])
    default = base.Backend("per shape", base.NoOptions, lambda graph, dims, options: None)
    assert default.fixed_dims(graph)({"batch": 4}) == {"batch": 4}  # triton's, until it opts in
    assert fixed_dims(graph)({"batch": 4}) == {}
    assert fixed_dims(graph)({"batch": 0}) == {"batch": 0}


def test_a_stride_that_depends_on_a_symbolic_size_leaves_the_kernel_to_numpy():
    # (3, batch): its rows are batch apart, a stride C would need as a number
    x = gc.input("x", ("batch", 3))
    fn = gc.compile([gc.relu(x.T) * 2 + 1, gc.sum(x * x, axis=1)])
    ref = gc.compile([gc.relu(x.T) * 2 + 1, gc.sum(x * x, axis=1)], backend="reference")
    for n in (2, 5, 1):
        X = RNG.standard_normal((n, 3)).astype(np.float32)
        for got, want in zip(fn(x=X), ref(x=X)):
            np.testing.assert_allclose(got, want, rtol=1e-6)
    transposed, rows = fn.kernels
    assert "stride that depends on the symbolic size _dim_batch" in transposed.reason
    assert transposed.strategy == "ufuncs" and len(fn._executables) == 1
    if ccompile.available():
        assert rows.strategy == "C loops"


def test_a_choice_that_depends_on_the_batch_size_is_made_at_each_call():
    # C loops below 65536 elements, NumPy's SIMD tanh above (strategy.py): with a
    # symbolic batch both are built, and each call takes the one for its size
    x = gc.input("x", ("batch", 512))
    y = gc.tanh(x) * 2 + 1
    fn, ref = gc.compile(y), gc.compile(y, backend="reference")
    for n in (4, 200, 1, 128, 129):
        X = RNG.standard_normal((n, 512)).astype(np.float32)
        np.testing.assert_allclose(fn(x=X), ref(x=X), rtol=1e-5, atol=1e-6)
    (kernel,) = fn.kernels
    assert len(fn._executables) == 1
    if ccompile.available():
        assert "if 512 * _dim_batch > 65536:" in fn.source and kernel.strategy == "C loops"
        assert "at a call where 512 * _dim_batch > 65536: ufuncs" in kernel.reason
