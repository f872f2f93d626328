"""Seed 001's XOR network, trained to 100% accuracy, and its forward and backward graphs.

XOR is not linearly separable, so no linear model learns it; one ReLU hidden layer does
(seed 001, "Learning the XOR"):

    a1 = max(0, W1^T x + b1)          the hidden layer "merges" (0,1) and (1,0)
    p  = sigmoid(w2^T a1 + b2)        probability of class 1; predict 1 when p > 0.5
    loss = mean(softplus(z) - y z)    cross-entropy in seed 001's softplus form, z = w2^T a1 + b2

trained by full-batch gradient descent on the four points. (The notes leave the biases
implicit in W; here they are separate params.)

    python examples/xor.py [--backend numpy|reference|triton] [--out DIR]
writes DIR/xor_forward.svg, DIR/xor_backward.svg and DIR/xor_fused.svg (the optimized
training graph, each fused kernel a cluster); DOT text if Graphviz is missing.
"""

import os
import sys

import numpy as np

import graphc as gc
from example_helpers import accuracy, parser, save_graph

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
Y = np.array([0, 1, 1, 0], dtype=np.float32)


def build(hidden=4, seed=0) -> dict:
    """The XOR network's graph (see the graphc.cli.render module for the convention)."""
    rng = np.random.default_rng(seed)
    x = gc.input("x", ("batch", 2))
    y = gc.input("y", ("batch",))
    W1 = gc.param("W1", rng.standard_normal((2, hidden)))
    b1 = gc.param("b1", np.full(hidden, 0.1))  # slightly positive: no unit starts dead
    w2 = gc.param("w2", rng.standard_normal(hidden))
    b2 = gc.param("b2", 0.0)
    a1 = gc.relu(x @ W1 + b1)
    z = a1 @ w2 + b2
    p = gc.sigmoid(z)
    loss = gc.nn.binary_cross_entropy_with_logits(z, y)
    return {"outputs": [loss, p], "loss": loss, "logits": z, "params": [W1, b1, w2, b2],
            "x": x, "y": y, "feeds": {"x": X, "y": Y}}


def train(model: dict, steps: int, lr: float, backend: str) -> list:
    """Full-batch gradient descent; returns the loss after each step."""
    loss = model["loss"]
    step = gc.compile(loss, updates=gc.optim.sgd(loss, model["params"], lr=lr), backend=backend)
    return [float(step(x=X, y=Y)) for _ in range(steps)]


def main(argv=None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000, help="gradient steps (default: 2000)")
    p.add_argument("--lr", type=float, default=0.5, help="learning rate (default: 0.5)")
    p.add_argument("--out", default=".", help="directory for the graph pictures")
    args = p.parse_args(argv)

    model = build(seed=args.seed)
    losses = train(model, args.steps, args.lr, args.backend)
    predict = gc.compile(model["logits"], backend=args.backend)
    logits = predict(x=X)
    acc = accuracy(logits, Y)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} after {args.steps} steps")
    for point, z, label in zip(X, logits, Y):
        print(f"  x={point}  p={1 / (1 + np.exp(-z)):.3f}  predicted {int(z > 0)}  "
              f"target {int(label)}")
    print(f"accuracy {acc:.0%}")

    os.makedirs(args.out, exist_ok=True)
    forward = save_graph(model["outputs"], os.path.join(args.out, "xor_forward.svg"))
    backward = save_graph(model["loss"], os.path.join(args.out, "xor_backward.svg"),
                          backward=True)
    fused = save_graph(model["loss"], os.path.join(args.out, "xor_fused.svg"),
                       backward=True, fused=True)
    print(f"wrote {forward}, {backward} and {fused}")
    return 0 if acc == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
