"""gc.nn's activations, masked softmax and attention against torch: values and gradients
on every backend, fully masked rows, stability at large scores, the one softmax kernel,
multi-head attention against nn.MultiheadAttention, and sinusoidal positions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphc as gc
from graphc import ops
from graphc.errors import DtypeError, ShapeError, UsageError
from graphc.passes import optimize
from tests.torch_like import assert_like_torch

RNG = np.random.default_rng(0)
EXTREME = np.array([-1000.0, -50.0, -3.0, -1e-3, 0.0, 1e-3, 1.0, 3.0, 50.0, 1000.0])


def test_silu_like_torch(backend):
    assert_like_torch(backend, gc.nn.silu, F.silu, {"x": np.concatenate([EXTREME, [7.5]])})


def test_gelu_tanh_form_like_torch(backend):
    assert_like_torch(backend, lambda x: gc.nn.gelu(x, approximate="tanh"),
                      lambda x: F.gelu(x, approximate="tanh"),
                      {"x": np.concatenate([EXTREME, RNG.standard_normal(7)])})


def test_exact_gelu_like_torch(backend):
    assert_like_torch(backend, gc.nn.gelu, F.gelu,
                      {"x": np.concatenate([EXTREME, RNG.standard_normal(7)])})


def test_gelu_names_an_unknown_form():
    with pytest.raises(UsageError, match="gelu: approximate='exact'; choose 'none'"):
        gc.nn.gelu(gc.input("x", (3,)), approximate="exact")


MASK = np.array([[True, False, True, True], [False, False, False, False],
                 [True, True, True, True]])


def test_masked_softmax_weighs_masked_entries_zero_and_a_masked_row_zeros(backend):
    data = np.array([[1.0, 1e4, 2.0, 3.0], [5.0, 1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0, 1.0]])
    x, mask = gc.input("x", (3, 4), "float64"), gc.input("mask", (3, 4), "bool")
    s = gc.nn.softmax(x, mask=mask)
    w = RNG.standard_normal((3, 4))
    out, dx = backend.compile([s, gc.grad(gc.sum(s * w), x)])(x=data, mask=MASK)
    want = torch.softmax(torch.tensor(data).masked_fill(~torch.tensor(MASK), -np.inf), -1)
    np.testing.assert_allclose(out[[0, 2]], want[[0, 2]].numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(out[1], 0.0)  # all masked: zeros, not torch's nan
    assert np.isfinite(dx).all()
    np.testing.assert_array_equal(dx[~MASK], 0.0)  # 1e4 under the mask: no inf * 0


def test_masked_softmax_takes_a_broadcast_mask_and_refuses_a_float_one():
    x = gc.input("x", ("n", 4))
    assert gc.nn.softmax(x, mask=np.array([True, False, True, True])).shape == ("n", 4)
    with pytest.raises(DtypeError, match="softmax: mask must be bool"):
        gc.nn.softmax(x, mask=np.ones(4))


def _qkv(batch=(2, 3), queries=4, keys=5, depth=8):
    return {"q": RNG.standard_normal(batch + (queries, depth)),
            "k": RNG.standard_normal(batch + (keys, depth)),
            "v": RNG.standard_normal(batch + (keys, depth))}


CAUSAL_MASKS = {
    "none": (None, False), "causal": (None, True),
    "bool": (RNG.random((4, 5)) > 0.4, False),
    "float": (RNG.standard_normal((2, 1, 4, 5)), False),
    "row_masked": (np.array([[True] * 5, [False] * 5, [True, False] * 2 + [True],
                             [False, True, True, True, True]]), False),
}


@pytest.mark.parametrize("case", CAUSAL_MASKS)
def test_scaled_dot_product_attention_like_torch(case, backend):
    mask, causal = CAUSAL_MASKS[case]

    def ours(q, k, v):
        return gc.nn.scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)

    def theirs(q, k, v):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=None if mask is None else torch.tensor(mask), is_causal=causal)
    out = assert_like_torch(backend, ours, theirs, _qkv())
    if case == "row_masked":
        np.testing.assert_array_equal(out[:, :, 1], 0.0)


def test_attention_is_stable_at_large_scores_and_takes_a_scale(backend):
    arrays = {name: a * 30 for name, a in _qkv(batch=(1,), queries=3, keys=7).items()}
    out = assert_like_torch(
        backend, lambda q, k, v: gc.nn.scaled_dot_product_attention(q, k, v, scale=2.0),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=2.0), arrays,
        rtol=1e-7, atol=1e-8)
    assert np.isfinite(out).all()


def test_attention_with_a_causal_mask_and_a_bool_mask_needs_both():
    q = gc.input("q", (3, 4))
    keep = np.array([[True, True, False], [True, True, True], [False, True, True]])
    data = RNG.standard_normal((3, 4)).astype(np.float32)
    out = gc.compile(gc.nn.scaled_dot_product_attention(q, q, q, mask=keep, causal=True))
    both = np.tril(np.ones((3, 3), bool)) & keep
    want = F.scaled_dot_product_attention(*[torch.tensor(data)] * 3, attn_mask=torch.tensor(both))
    np.testing.assert_allclose(out(q=data), want.numpy(), rtol=1e-5, atol=1e-6)


def test_attention_softmax_is_one_kernel():
    q, k, v = (gc.input(n, ("batch", 4, 6, 8)) for n in "qkv")
    graph = optimize(gc.Graph([gc.nn.scaled_dot_product_attention(q, k, v, causal=True)]),
                     "O2")
    kernels = [n for n in graph.nodes if n.op not in ("input", "param", "const")
               and not ops.has(n.op, "view")]
    assert [(n.op, n.attrs.get("kind")) for n in kernels] == [
        ("fused", "matmul"), ("fused", "reduction"), ("matmul", None)]


def test_causal_attention_needs_fixed_lengths():
    q = gc.input("q", ("batch", "length", 8))
    with pytest.raises(ShapeError, match="causal attention needs fixed sequence lengths"):
        gc.nn.scaled_dot_product_attention(q, q, q, causal=True)


def test_multi_head_attention_like_torch(backend):
    width, heads = 8, 2
    attn = gc.nn.MultiHeadAttention("attn", width, heads, seed=3, dtype="float64")
    for b in attn.biases.values():
        b.value = RNG.standard_normal(width)
    x = gc.input("x", (2, 5, width), "float64")
    memory = gc.input("memory", (2, 3, width), "float64")
    X, M = RNG.standard_normal((2, 5, width)), RNG.standard_normal((2, 3, width))
    f = backend.compile([attn(x, causal=True), attn(x, memory)])
    self_attention, cross = f(x=X, memory=M)
    twin = torch.nn.MultiheadAttention(width, heads, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        W, b = attn.weights, attn.biases
        twin.in_proj_weight.copy_(torch.tensor(np.concatenate([W[w].value.T for w in "qkv"])))
        twin.in_proj_bias.copy_(torch.tensor(np.concatenate([b[w].value for w in "qkv"])))
        twin.out_proj.weight.copy_(torch.tensor(W["o"].value.T))
        twin.out_proj.bias.copy_(torch.tensor(b["o"].value))
        future = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)  # torch: True = masked
        want_self, _ = twin(*[torch.tensor(X)] * 3, attn_mask=future)
        want_cross, _ = twin(torch.tensor(X), torch.tensor(M), torch.tensor(M))
    np.testing.assert_allclose(self_attention, want_self.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cross, want_cross.numpy(), rtol=1e-10, atol=1e-12)
    assert len(attn.params) == 8 and {p.name for p in attn.params} >= {"attn_Wq", "attn_bo"}


def test_multi_head_attention_trains_its_params():
    attn = gc.nn.MultiHeadAttention("attn", 4, 2, seed=0)
    x = gc.input("x", ("batch", 3, 4))
    loss = gc.nn.mse(attn(x), x)
    step = gc.compile(loss, updates=gc.optim.adam(loss, attn.params, lr=0.05))
    X = RNG.standard_normal((8, 3, 4)).astype(np.float32)
    first = step(x=X)
    for _ in range(30):
        last = step(x=X)
    assert last < 0.5 * first


def test_multi_head_attention_heads_must_divide_the_width():
    with pytest.raises(ShapeError, match="heads=3 must divide width=8"):
        gc.nn.MultiHeadAttention("attn", 8, 3)


@pytest.mark.parametrize("length,width", [(7, 6), (1, 1), (5, 7)])
def test_sinusoidal_positions_follow_the_formula(length, width):
    table = gc.compile(gc.nn.sinusoidal_positions(length, width, dtype="float64"))()
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    i = torch.arange(width, dtype=torch.float64)[None, :]
    angle = pos / 10000 ** ((i - i % 2) / width)
    want = torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))
    np.testing.assert_allclose(table, want.numpy(), rtol=1e-12, atol=1e-15)


def test_attention_of_no_queries_and_of_one_key(backend):
    q, k = gc.input("q", (2, 0, 3), "float64"), gc.input("k", (2, 1, 3), "float64")
    one = gc.input("one", (2, 1, 3), "float64")
    f = backend.compile([gc.nn.scaled_dot_product_attention(q, k, k),
                         gc.nn.scaled_dot_product_attention(one, k, k * 2.0)])
    none, single = f(q=np.zeros((2, 0, 3)), k=np.ones((2, 1, 3)), one=np.ones((2, 1, 3)))
    assert none.shape == (2, 0, 3)
    np.testing.assert_array_equal(single, 2.0)  # one key: all the weight on it
