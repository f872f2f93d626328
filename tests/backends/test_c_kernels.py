"""The numpy backend's C kernels (backends/numpy/c.py over backends/lower and
backends/c_render.py, compiled by ccompile.py).

Which bodies become C and which stay NumPy, with the reason printed in the source; the
same numbers as the reference backend, NaN and inf included; one_hot's label check; the
compiler's cache. Skipped where no C compiler works (the NumPy kernels are then all there
is, and test_numpy.py covers them).
"""

import re

import numpy as np
import pytest

import graphc as gc
from graphc.backends import blas, ccompile
from tests.backends.test_numpy import fused, run_both
from tests.backends.test_numpy_gemm import small_mlp

pytestmark = pytest.mark.skipif(not ccompile.available(), reason="no working C compiler")

RNG = np.random.default_rng(5)


def c_calls(fn) -> list:
    """The C kernels a compiled function calls, as the ops each computes."""
    return re.findall(r"_k\d+\([^)]*\).*# C: (.*)", fn.source)


def numpy_reasons(fn) -> list:
    return re.findall(r"# \(NumPy, not C: (.*)\)", fn.source)


# --- which bodies are C ------------------------------------------------------------------

def _x(shape=(4, 6)):
    return gc.input("x", shape), {"x": RNG.standard_normal(shape).astype(np.float32)}


# name -> (kind, body of in0 = x, x's shape): each must be one C kernel with the
# reference numbers
C_BODIES = {
    "softmax: two row reductions": ("reduction", lambda a: gc.nn.softmax(a), (4, 6)),
    "logsumexp": ("reduction", lambda a: gc.nn.logsumexp(a, axis=1), (4, 6)),
    "column sum then a pointwise epilogue": ("reduction", lambda a: gc.sum(a, axis=0) * 2 - 1,
                                             (4, 6)),
    "two column sums": ("reduction", lambda a: gc.sum(a, axis=0) + gc.sum(a * a, axis=0),
                        (4, 6)),
    "a row and a column broadcast": ("reduction", lambda a: gc.relu(
        a - gc.sum(a, axis=1, keepdims=True) * 0 + gc.const(np.arange(6.0, dtype=np.float32))),
        (4, 6)),
    "compare, where, cast": ("pointwise", lambda a: gc.cast(
        gc.where(a > 0, a, -a) >= 0.5, "float32"), (4, 6)),
    "a bool result": ("pointwise", lambda a: gc.where(a > 0.5, a > 1, a < -1), (4, 6)),
    "float64 beside float32": ("pointwise", lambda a: a * gc.const(np.float64(0.5)) +
                               gc.cast(a, "float64"), (4, 6)),
    "every unary op": ("pointwise", lambda a: gc.exp(gc.tanh(a)) + gc.log1p(gc.abs(a)) +
                       gc.sqrt(gc.abs(a)) + gc.sigmoid(a) + gc.sign(a) + gc.step(a) +
                       gc.log(gc.abs(a) + 1) - a ** 2 + gc.maximum(a, 0.1) + gc.minimum(a, 0.2),
                       (4, 6)),
    # what the loop nests add (these stayed NumPy before the lowering)
    "a reduction over a middle axis": ("reduction", lambda a: gc.sum(a, axis=1), (2, 3, 4)),
    "a reduction over the first and last axes": (
        "reduction", lambda a: gc.max(a, axis=(0, 2)) * 2, (2, 3, 4)),
    "a transposed operand": ("pointwise", lambda a: gc.transpose(a) * 2, (3, 4)),
    "a row's value over a square domain": (
        "reduction", lambda a: a + gc.sum(a, axis=1, keepdims=True), (3, 3)),
    "a slice and a concat": ("pointwise", lambda a: gc.concat(
        [a[:, 1:], a[:, :1]], axis=1) - a, (3, 5)),
    "a reshape that regroups axes": ("pointwise", lambda a: gc.reshape(a, (3, 2, 2)) + 1,
                                     (6, 2)),
}


@pytest.mark.parametrize("name", C_BODIES)
def test_a_supported_body_is_one_c_kernel_with_the_reference_numbers(name):
    kind, make, shape = C_BODIES[name]
    x, feeds = _x(shape)
    fn, _ = run_both([fused(kind, [x], make)], feeds)
    assert len(c_calls(fn)) == 1 and not numpy_reasons(fn), fn.source
    assert "int _k0(" in fn.source  # the C source is shown after the Python
    (kernel,) = fn.kernels
    assert kernel.extra["c_source"].startswith("int _k0(") and kernel.kind == kind
    assert kernel.strategy == "C loops"


def test_an_operand_is_read_through_its_strides_not_copied():
    # x.T and a slice of x are views: the kernel reads x's own memory where they lie
    x = gc.input("x", (5, 4))
    k = fused("pointwise", [gc.transpose(x), x[1:4, ::2]], lambda t, s: t[:2, 1:4] * 2 + s.T)
    fn, _ = run_both([k], {"x": RNG.standard_normal((5, 4)).astype(np.float32)})
    assert len(c_calls(fn)) == 1 and "ascontiguousarray" not in fn.source
    assert re.search(r"_k0\(_at\d+, _at\d+ \+ 16, _at\d+\)", fn.source), fn.source


# name -> (kind, body of in0 = x, x's shape, the reason printed for NumPy)
NUMPY_BODIES = {
    "integer arithmetic": ("pointwise", lambda a: gc.cast(a, "int32") * 3, (3, 4),
                           "mul -> int32 has no C form here"),
    "reductions over different axes": (
        "reduction", lambda a: gc.sum(a, axis=1, keepdims=True) + gc.sum(a, axis=0, keepdims=True),
        (3, 4), "reductions over different axes or shapes"),
    "a concat of computed pieces": ("pointwise", lambda a: gc.concat([a * 2, a], axis=1),
                                    (3, 4), "a concat of computed pieces"),
    "a row's value read along the columns": ("reduction", lambda a: a + gc.sum(a, axis=1),
                                             (3, 3), "sum is read at another index"),
    "max over an empty axis": ("reduction", lambda a: gc.max(a, axis=1), (3, 0),
                               "max over an empty axis"),
    "a one_hot of computed labels": ("pointwise", lambda a: gc.one_hot(
        gc.cast(a, "int64"), 4), (3,), "a one_hot of computed labels"),
}


@pytest.mark.parametrize("name", NUMPY_BODIES)
def test_a_body_c_cannot_express_stays_numpy_and_says_why(name):
    kind, make, shape, reason = NUMPY_BODIES[name]
    x, feeds = _x(shape)
    if name == "a one_hot of computed labels":
        feeds["x"] = np.array([0.0, 3.0, 1.5], np.float32)
    if name == "max over an empty axis":  # NumPy raises, as the reference does
        fn = gc.compile(fused(kind, [x], make), backend="numpy")
        with pytest.raises(gc.GraphcError, match="max failed"):
            fn(**feeds)
    else:
        fn, _ = run_both([fused(kind, [x], make)], feeds)
    assert not c_calls(fn)
    assert any(reason in why for why in numpy_reasons(fn)), fn.source
    (kernel,) = fn.kernels
    assert kernel.strategy == "ufuncs" and reason in kernel.reason


def test_an_operand_numpy_would_copy_stays_numpy():
    # a reshape of a transposed view is a copy NumPy makes each call: no memory to read
    x = gc.input("x", (3, 4))
    k = fused("pointwise", [gc.reshape(gc.transpose(x), (12,))], lambda a: a * 2)
    fn, _ = run_both([k], {"x": RNG.standard_normal((3, 4)).astype(np.float32)})
    assert not c_calls(fn) and "an operand is a copy" in " ".join(numpy_reasons(fn))


def test_an_update_read_transposed_is_not_written_over_by_c():
    # W's new value W.T * 2 is written straight into W: a C loop would overwrite
    # elements it reads later, so the kernel stays NumPy (whose ufuncs handle overlap)
    W = gc.param("W", RNG.standard_normal((3, 3)))
    start = W.value.copy()
    step = gc.compile([gc.sum(W)], updates={W: gc.transpose(W) * 2})
    step()
    np.testing.assert_allclose(W.value, start.T * 2, rtol=1e-6)
    assert "read in another layout" in " ".join(numpy_reasons(step)), step.source


@pytest.mark.parametrize("shape, op, c", [((1 << 17,), gc.relu, True), ((1 << 17,), gc.tanh, False),
                                          ((1000,), gc.tanh, True)])
def test_large_kernels_of_exp_or_tanh_stay_numpy_and_others_go_to_c(shape, op, c):
    # NumPy's SIMD exp and tanh beat libm on big arrays; a relu does not care.
    x, feeds = _x(shape)
    fn, _ = run_both([fused("pointwise", [x], lambda a: op(a * 2))], feeds)
    assert bool(c_calls(fn)) == c
    if not c:
        assert numpy_reasons(fn) == ["NumPy's SIMD tanh beat libm on 131072 elements"]


# --- numbers: NaN and inf as in NumPy ------------------------------------------------------

def test_nan_and_inf_go_through_c_kernels_as_through_numpy():
    x = gc.input("x", (2, 5))
    values = np.array([[np.nan, 1.0, -np.inf, 0.0, -0.0],
                       [np.inf, -2.0, 3.0, np.nan, 0.5]], np.float32)
    outs = [fused("pointwise", [x], lambda a: gc.relu(a)),
            fused("pointwise", [x], lambda a: gc.maximum(a, 0.25) + gc.minimum(a, -0.25)),
            fused("pointwise", [x], lambda a: gc.where(a > 0, a, 0.0) * gc.sign(a)),
            fused("reduction", [x], lambda a: gc.max(a, axis=1)),
            fused("reduction", [x], lambda a: gc.sum(a, axis=0))]
    ref = gc.compile(outs, backend="reference", opt="O0")(x=values)
    fn = gc.compile(outs, backend="numpy", opt="O0")
    for got, want in zip(fn(x=values), ref):
        np.testing.assert_array_equal(got, want)
    assert len(c_calls(fn)) == len(outs)


# --- the MLP step: gemm and C share the matmul kernels ------------------------------------

def _mlp_step():
    loss, params, feeds = small_mlp(RNG)
    return loss, params, feeds, gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1))


def test_mlp_step_source_bias_and_relu_in_c_updates_in_gemm():
    loss, params, feeds, step = _mlp_step()
    step(**feeds)
    calls = c_calls(step)
    assert "add, relu" in calls  # the bias add and relu after the first matmul, one pass
    assert any(c.startswith("gt, where") for c in calls)  # relu's backward mask, one pass
    assert any("one_hot" in c for c in calls)
    # no bias copied in for a gemm to add to (a NumPy variant of a kernel chosen at run
    # time, for large batches, may copy its own values)
    assert not re.search(r"np\.copyto\(_b\w*, b\d\)", step.source)
    if blas.find() is not None:  # the SGD update accumulated into W1 by gemm itself
        assert re.search(r"_gemm\(\w+\.T, \w+, W1, -0\.1, 1\.0\)", step.source)


def test_mlp_step_trains_like_the_reference_and_a_bad_label_changes_nothing():
    loss, params, feeds, step = _mlp_step()
    start = [p.value.copy() for p in params]
    losses = [float(step(**feeds)) for _ in range(5)]
    finals = [p.value.copy() for p in params]
    for p, value in zip(params, start):
        p.value[...] = value
    ref = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1), backend="reference")
    np.testing.assert_allclose(losses, [float(ref(**feeds)) for _ in range(5)], rtol=1e-5)
    for got, p in zip(finals, params):
        np.testing.assert_allclose(got, p.value, rtol=1e-5, atol=1e-6)
    before = [p.value.copy() for p in params]
    with pytest.raises(gc.GraphcError, match=r"one_hot: label 7 is outside \[0, 3\)"):
        step(x=feeds["x"], y=np.full(16, 7))
    for p, value in zip(params, before):
        np.testing.assert_array_equal(p.value, value)


def test_a_param_whose_value_is_reassigned_is_read_at_its_new_address():
    x = gc.input("x", (3, 4))
    b = gc.param("b", np.zeros(4))
    fn = gc.compile(fused("pointwise", [x, b], lambda a, c: gc.relu(a + c)))
    feed = RNG.standard_normal((3, 4)).astype(np.float32)
    fn(x=feed)
    b.value = np.full(4, 10.0, np.float32)
    np.testing.assert_allclose(fn(x=feed), np.maximum(feed + 10, 0))
    assert c_calls(fn)


# --- the compiler and its cache -------------------------------------------------------------

def test_compiled_libraries_are_cached_by_source(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    sources = {"graphc_test_answer": "int graphc_test_answer(void) { return 7; }\n"}
    assert ccompile.compile_kernels(sources)["graphc_test_answer"]() == 7
    (cached,) = (tmp_path / "graphc").glob("kernels_*.so")
    stamp = cached.stat().st_mtime_ns
    assert ccompile.compile_kernels(sources)["graphc_test_answer"]() == 7
    assert cached.stat().st_mtime_ns == stamp  # loaded, not built again


def test_a_compiler_error_names_the_compiler_output(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(ccompile.CompileFailed, match="the C compiler failed") as failed:
        ccompile.compile_kernels({"broken": "int broken( { return; }\n"})
    reason, output = str(failed.value).split("\n", 1)
    assert reason == failed.value.reason and "error" in output  # the compiler's own words


# --- regressions found by random graphs --------------------------------------------------

def test_a_column_sum_over_one_row_stores_every_column():
    x = gc.input("x", (2,))
    fn, _ = run_both([fused("reduction", [x], lambda a: gc.sum(gc.reshape(a, (1, 2)), axis=0))],
                     {"x": np.array([0.0, 1.0], np.float32)})
    assert c_calls(fn)


def test_an_operand_of_lower_rank_is_read_along_the_last_axes():
    # (4, 4) beside (4, 4, 4) lines up with the last two axes, not with the rows
    x = gc.input("x", (4, 4, 4))
    eye = gc.const(np.eye(4, dtype=np.float32))
    fn, _ = run_both([fused("pointwise", [x], lambda a: a + eye)],
                     {"x": RNG.standard_normal((4, 4, 4)).astype(np.float32)})
    assert c_calls(fn) and not numpy_reasons(fn)


def test_a_row_shaped_operand_that_broadcasts_along_the_columns_is_not_read_by_rows():
    # b is (1, 4): broadcasting reads it as (1, 1, 4), one number a column
    x, b = gc.input("x", (1, 4, 4)), gc.input("b", (1, 4))
    fn, _ = run_both([fused("pointwise", [x, b], lambda p, q: p + q)],
                     {"x": np.zeros((1, 4, 4), np.float32),
                      "b": np.arange(4, dtype=np.float32).reshape(1, 4)})
    assert c_calls(fn) and not numpy_reasons(fn)
