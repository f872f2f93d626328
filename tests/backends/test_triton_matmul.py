"""The triton backend's matmul kernels, run in Triton's CPU interpreter: the float32
precisions (ieee, tf32, bf16 operands, float32 sums), the grouped tile order at odd
sizes, and split-K (its two kernels and their workspace), each against NumPy or torch.

What only a GPU's compiler shows (tensor-core instructions, 16-byte loads, spills) is
checked ahead of time in test_triton_aot.py.
"""

import numpy as np
import pytest
import torch

import graphc as gc
from graphc.backends.triton import blocks
from graphc.backends.triton.build import Options, settings
from graphc.errors import GraphcError
from graphc.passes.fusion import make_fused
from tests.backends.test_triton import randn, run_both


def bf16(a):
    """a's values rounded to bfloat16 (round to nearest even, as the tensor cores read)."""
    return torch.from_numpy(a).to(torch.bfloat16).to(torch.float32).numpy()


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 33, 129), (129, 7, 1), (200, 17, 65)])
def test_grouped_tile_order_covers_every_tile_once(m, k, n):
    """Tiles are taken in groups of GROUP_M rows of tiles: every output still written
    once (a grid of 4 x 3 tiles, with a last group shorter than GROUP_M, among them)."""
    a, b = gc.input("a", (m, k)), gc.input("b", (k, n))
    kernel = make_fused("matmul", [a, b], lambda a, b: a @ b * 2)
    tri = run_both([kernel], {"a": randn(m, k), "b": randn(k, n)})
    assert "GROUP_M" in tri.source and "tl.max_contiguous(tl.multiple_of(" in tri.source


@pytest.mark.parametrize("precision", blocks.PRECISIONS)
def test_each_precision_multiplies_as_its_hardware_does(precision):
    a, b = randn(7, 40), randn(40, 9)
    x, w = gc.input("a", (7, 40)), gc.input("b", (40, 9))
    f = gc.compile(x @ w, backend="triton", options={"precision": precision})
    got = f(a=a, b=b)
    assert f"{'_dot_bf16' if precision == 'bf16' else precision}" in f.source
    if precision == "bf16":
        # the operands rounded to bfloat16, their products summed in float32
        np.testing.assert_allclose(got, bf16(a) @ bf16(b), rtol=1e-5, atol=1e-5)
        assert np.abs(got - a @ b).max() > 1e-4          # (it is not the float32 product)
    else:  # the interpreter has no tf32: both are float32 products there
        np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-5)


def test_precision_follows_torch_allow_tf32_unless_given():
    opts = Options()
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        for allowed, want in ((False, "ieee"), (True, "tf32")):
            torch.backends.cuda.matmul.allow_tf32 = allowed
            assert settings(opts, torch, "cpu").precision == want
            given = Options(precision="bf16")
            assert settings(given, torch, "cpu").precision == "bf16"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    with pytest.raises(GraphcError, match="precision must be one of ieee, tf32, bf16"):
        gc.compile(gc.input("x", (2,)) * 2, backend="triton", options={"precision": "fp16"})


def test_float64_and_integer_matmuls_ignore_the_float32_precision():
    for dtype in ("float64", "int32"):
        x, w = gc.input("x", (5, 6), dtype=dtype), gc.input("w", (6, 3), dtype=dtype)
        f = gc.compile(x @ w, backend="triton", options={"precision": "bf16"})
        a = np.arange(30).reshape(5, 6).astype(dtype)
        b = np.arange(18).reshape(6, 3).astype(dtype) - 7
        np.testing.assert_array_equal(f(x=a, w=b), a @ b)


def test_split_k_fills_the_sms_only_when_tiles_are_few_and_k_long():
    assert blocks.split_k(tiles=200, k=8192) == 1          # every SM has a tile
    assert blocks.split_k(tiles=104, k=8192) == 2          # the weight gradient at 8192
    assert blocks.split_k(tiles=32, k=784) == 2            # a share keeps >= 256 of K
    assert blocks.split_k(tiles=1, k=300) == 1
    assert blocks.split_k(tiles=1, k=100000, sms=8) == 8


@pytest.mark.parametrize("k", [513, 1029])
@pytest.mark.parametrize("trans_a", [False, True])
def test_split_k_matmul_with_epilogue(k, trans_a):
    """K split into shares (odd K: the last share is short, or empty), summed by a second
    kernel that applies the bias and relu."""
    m, n = 7, 9
    a = gc.input("a", (k, m) if trans_a else (m, k))
    b, bias = gc.input("b", (k, n)), gc.input("bias", (n,))
    kernel = make_fused("matmul", [a, b, bias],
                        lambda a, b, bias: gc.relu((a.T if trans_a else a) @ b + bias))
    tri = run_both([kernel], {"a": randn(*a.shape), "b": randn(k, n), "bias": randn(n)},
                   sms=4)
    partial, total = tri.program.kernels
    split = blocks.split_k(1, k, 4)
    assert split > 1 and partial.grid == (1, 1, split) and total.grid == (1, 1, 1)
    assert partial.workspace == total.workspace == split * m * n
    assert "ws_ptr" in partial.source and "tl.dot" not in total.source
    assert [info.kind for info in tri.kernels] == ["matmul", "matmul"]


def test_split_k_of_a_batched_matmul_in_a_training_step():
    """Shares of batched products land apart in the workspace; a step trains as numpy's."""
    x = gc.input("x", (2, 3, 600))
    w = gc.param("w", randn(600, 5))
    loss = gc.sum(gc.relu(x @ w) ** 2)
    feeds = {"x": randn(2, 3, 600)}
    results = {}
    for backend, options in (("numpy", None), ("triton", {"sms": 4})):
        w.value = np.linspace(-1, 1, 3000, dtype=np.float32).reshape(600, 5)
        step = gc.compile(loss, updates=gc.optim.sgd(loss, [w], lr=1e-4), backend=backend,
                          options=options)
        results[backend] = [step(**feeds) for _ in range(3)] + [w.value.copy()]
    assert any(k.extra["workspace"] for k in step.kernels)
    for got, want in zip(results["triton"], results["numpy"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
