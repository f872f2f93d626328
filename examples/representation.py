"""Seed 002's demo: hidden layers learn a representation in which the data is separable.

The data, two concentric rings, is separated by no line in the plane. A network with
three hidden layers, the last of only two neurons, is trained to classify it; plugging
each point into the network and reading the last hidden layer's two activations gives
the learned 2-D representation, in which the output layer's decision boundary is a line
(seed 002, "Learning a New Representation").

    python examples/representation.py [--backend numpy|reference|triton] [--steps 600]
saves representation.png: the data with the decision boundary, in the input plane and in
the learned representation.
"""

import sys

import numpy as np

import graphc as gc
from example_helpers import accuracy, parser


def rings(n: int, seed=0):
    """n points on two noisy concentric rings (radius 1: class 0, radius 2: class 1)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = 1.0 + labels + rng.normal(0, 0.15, n)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return points.astype(np.float32), labels.astype(np.float32)


def build(hidden=(16, 16, 2), seed=0) -> dict:
    """The classifier's graph (see the graphc.cli.render module for the convention)."""
    rng = np.random.default_rng(seed)
    x = gc.input("x", ("batch", 2))
    y = gc.input("y", ("batch",))
    params, h = [], x
    for i, (n_in, n_out) in enumerate(zip((2, *hidden), hidden), 1):
        W = gc.param(f"W{i}", rng.standard_normal((n_in, n_out)) / np.sqrt(n_in))
        b = gc.param(f"b{i}", np.zeros(n_out))
        params += [W, b]
        h = gc.tanh(h @ W + b)  # tanh: a 2-neuron layer of ReLUs could die
    w_out = gc.param("w_out", rng.standard_normal(hidden[-1]))
    b_out = gc.param("b_out", 0.0)
    logits = h @ w_out + b_out
    loss = gc.nn.binary_cross_entropy_with_logits(logits, y)
    return {"outputs": [loss, gc.sigmoid(logits)], "loss": loss, "logits": logits,
            "representation": h, "params": params + [w_out, b_out], "w_out": w_out,
            "b_out": b_out, "x": x, "y": y}


def train(model, X, y, steps, lr, backend) -> list:
    """Full-batch Adam; returns the loss after each step."""
    loss = model["loss"]
    step = gc.compile(loss, updates=gc.optim.adam(loss, model["params"], lr=lr),
                      backend=backend)
    return [float(step(x=X, y=y)) for _ in range(steps)]


def plot(model, X, y, backend, path):
    """Left: the input plane with the decision boundary. Right: the learned 2-D
    representation, where the boundary w_out . h + b_out = 0 is a line."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    f = gc.compile([model["logits"], model["representation"]], backend=backend)
    _, H = f(x=X)
    lim = np.abs(X).max() * 1.1
    gx, gy = np.meshgrid(np.linspace(-lim, lim, 200), np.linspace(-lim, lim, 200))
    grid_logits, _ = f(x=np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32))

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5))
    left.contourf(gx, gy, grid_logits.reshape(gx.shape) > 0, levels=1, alpha=0.15,
                  colors=["tab:blue", "tab:orange"])
    left.contour(gx, gy, grid_logits.reshape(gx.shape), levels=[0], colors="k")
    right.scatter(H[:, 0], H[:, 1], c=y, cmap="coolwarm", s=10)
    left.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=10)
    (w1, w2), b = model["w_out"].value, float(model["b_out"].value)
    t = np.linspace(-1.05, 1.05, 2)  # tanh units live in [-1, 1]
    if abs(w2) > abs(w1):
        right.plot(t, -(w1 * t + b) / w2, "k-")
    else:
        right.plot(-(w2 * t + b) / w1, t, "k-")
    right.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), xlabel="1st feature, 3rd hidden layer",
              ylabel="2nd feature, 3rd hidden layer", title="learned representation")
    left.set(xlabel="x1", ylabel="x2", title="input space", aspect="equal")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600, help="Adam steps (default: 600)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default: 0.01)")
    p.add_argument("--points", type=int, default=400, help="data points (default: 400)")
    p.add_argument("--out", default="representation.png", help="figure path (default: %(default)s)")
    args = p.parse_args(argv)

    X, y = rings(args.points, seed=args.seed)
    model = build(seed=args.seed)
    losses = train(model, X, y, args.steps, args.lr, args.backend)
    acc = accuracy(gc.compile(model["logits"], backend=args.backend)(x=X), y)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}; training accuracy {acc:.1%}")
    plot(model, X, y, args.backend, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
