"""One check for composites with a torch twin: the value and the gradients of a random
projection of it, graphc (on a backend) against torch.autograd, in float64."""

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
