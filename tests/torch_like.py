"""Checks against torch: one for composites with a torch twin (the value and the
gradients of a random projection of it, graphc on a backend against torch.autograd, in
float64), and the helpers the op tests share (test values with NaN and inf, tensors of
them, running outputs fed only what they read)."""

import numpy as np
import torch

import graphc as gc


def assert_like_torch(backend, build, reference, arrays: dict, rtol=1e-9, atol=1e-11,
                      seed=0):
    """build(*input nodes) -> node and reference(*tensors) -> tensor, both of `arrays`
    (name -> float64 array, fed as inputs). Compares out and d sum(out * r)/d each input
    for a random r; returns graphc's output."""
    nodes = [gc.input(name, a.shape, "float64") for name, a in arrays.items()]
    out = build(*nodes)
    weights = np.random.default_rng(seed).standard_normal(out.type.concrete_shape())
    r = gc.input("r", out.shape, "float64")
    f = backend.compile([out] + gc.grad(gc.sum(out * r), nodes))
    got = f(**arrays, r=weights)
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays.values()]
    want = reference(*leaves)
    (want * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(got[0], want.detach().numpy(), rtol=rtol, atol=atol,
                               err_msg="value")
    for name, g, leaf in zip(arrays, got[1:], leaves):
        np.testing.assert_allclose(g, leaf.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"gradient of {name}")
    return got[0]


def torch_of(array):
    """A torch tensor of a NumPy array's values (a contiguous copy where it is a view)."""
    return torch.from_numpy(np.ascontiguousarray(array))


def run_reading(backend, outs, feeds) -> list:
    """The outputs on `backend`, fed only the inputs they read (a gradient may read none:
    floor's is zeros)."""
    names = {n.name for n in gc.Graph(outs).inputs}
    return backend.compile(outs)(**{k: v for k, v in feeds.items() if k in names})


def special_values(shape, dtype, seed=0, special=True, scale=1.0) -> np.ndarray:
    """Normal values times `scale`; with `special` and over 100 of them, NaN, inf and -inf
    at scattered places."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    if special and x.size > 100:
        flat = x.reshape(-1)
        flat[3::101], flat[50::131], flat[77::211] = np.nan, np.inf, -np.inf
    return x
