"""DESIGN.md's "API at a glance" block, run as written (with the backend as a parameter),
plus a check that its gradients are right."""

import numpy as np
import torch

import graphc as gc

def test_api_at_a_glance(backend, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 2)).astype(np.float32)
    Y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)

    x = gc.input("x", ("batch", 2))
    y = gc.input("y", ("batch",), dtype="int64")
    W1 = gc.param("W1", rng.standard_normal((2, 8)) * 0.5)
    b1 = gc.param("b1", np.zeros(8))
    W2 = gc.param("W2", rng.standard_normal((8, 2)) * 0.5)
    b2 = gc.param("b2", np.zeros(2))

    h = gc.relu(x @ W1 + b1)
    logits = h @ W2 + b2
    loss = gc.nn.softmax_cross_entropy(logits, y)
    gW1, gb1 = gc.grad(loss, [W1, b1])
    g = gc.Graph([loss, gW1, gb1])
    assert "[grad]" in str(g)
    reread = gc.ir.parse(str(g))
    assert len(reread.nodes) == len(g.nodes)

    f = backend.compile([loss, gW1, gb1])
    loss_v, gW1_v, gb1_v = f(x=X, y=Y)
    assert str(f.graph) and f.source is not None

    tW1, tb1 = (torch.tensor(p.value, requires_grad=True) for p in (W1, b1))
    t_logits = torch.relu(torch.tensor(X) @ tW1 + tb1) @ torch.tensor(W2.value) + torch.tensor(
        b2.value)
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.tensor(Y))
    t_loss.backward()
    np.testing.assert_allclose(loss_v, t_loss.item(), rtol=1e-5)
    np.testing.assert_allclose(gW1_v, tW1.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gb1_v, tb1.grad.numpy(), rtol=1e-4, atol=1e-6)

    params = [W1, b1, W2, b2]
    step = backend.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1))
    before = W1.value.copy()
    losses = [step(x=X, y=Y) for _ in range(100)]
    assert not np.array_equal(W1.value, before)
    assert losses[-1] < losses[0]
    gc.render(loss, backward=True, fused=True, path=str(tmp_path / "mlp.svg"))
    assert (tmp_path / "mlp.svg").read_text().lstrip().startswith("<")
