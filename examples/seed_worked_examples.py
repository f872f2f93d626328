"""Seed 002's numeric exercises, computed by graphc beside the values the notes derive.

1. Forward pass (Lecture 22, part 1): g = ReLU, linear output, x = (3, -1),
   W1 = [[2, -1, 0], [4, 5, 2]], b1 = (3, -2, -2), W2 = (3, 2, -4), b2 = -4.
       z1 = W1^T x + b1 = (6-4, -3-5, 0-2) + b1 = (5, -10, -4);   a1 = ReLU(z1) = (5, 0, 0)
       z2 = W2^T a1 + b2 = 15 - 4 = 11
2. Exercise (part 3): W1[:, 0] = (-2, -5, 2), x = (3, 2, -2), biases 0, ReLU.
       z1_1 = -6 - 10 - 4 = -20 < 0, so g'(z1_1) = 0 and dH/dW1_11 = g'(z1_1) x_1 ... = 0.
   (The notes' figure gives only these weights; the others here are arbitrary, and the
   answer does not depend on them.)
3. Backprop example (part 4): W1 = [[2, -3], [2, 1]], W2 = [[2, 1], [0, 1]],
   W3 = (3, -2), x = (2, 1), g = ReLU, no biases. Forward: z1 = (6, -5), a1 = (6, 0),
   z2 = a2 = (12, 6), H = 3*12 - 2*6 = 24. Backward, with the notes' four formulas
   (dH/da = W dH/dz_next,  dH/dz = dH/da g'(z),  dH/dW_ij = dH/dz_j a_i):
       dH/dW3 = a2 = (12, 6);            dH/dz2 = (3, -2) * g'(z2) = (3, -2)
       dH/dW2 = a1 (x) dH/dz2 = [[18, -12], [0, 0]]
       dH/da1 = W2 dH/dz2 = (4, -2);     dH/dz1 = (4, -2) * g'(z1) = (4, 0)
       dH/dW1 = x (x) dH/dz1 = [[8, 0], [4, 0]]

    python examples/seed_worked_examples.py [--backend numpy|reference|triton]
prints each quantity, graphc's value and the notes' value; exits 1 on a mismatch.
"""

import sys

import numpy as np

import graphc as gc
from example_helpers import parser


def param(name, value):
    """The notes' integer weights as float32 params (integer params have no gradient)."""
    return gc.param(name, value, dtype="float32")


def forward_example():
    x = gc.input("x", (2,))
    W1 = param("W1", [[2, -1, 0], [4, 5, 2]])
    b1 = param("b1", [3, -2, -2])
    W2 = param("W2", [3, 2, -4])
    b2 = param("b2", -4)
    z1 = gc.add(x @ W1, b1, name="z1")  # named: the pictures label the nodes as the notes do
    a1 = gc.relu(z1, name="a1")
    z2 = gc.add(a1 @ W2, b2, name="z2")
    rows = [("z1", z1, [5, -10, -4]), ("a1", a1, [5, 0, 0]), ("z2", z2, 11)]
    return rows, {"x": [3, -1]}


def relu_gate_exercise():
    x = gc.input("x", (3,))
    W1 = param("W1", [[-2, 1], [-5, 1], [2, 1]])  # column 0 is the notes'; column 1 is ours
    W2 = param("W2", [1, 1])
    z1 = x @ W1
    H = gc.relu(z1) @ W2
    (dW1,) = gc.grad(H, [W1])
    rows = [("z1_1", z1[0], -20), ("dH/dW1_11", dW1[0, 0], 0)]
    return rows, {"x": [3, 2, -2]}


def backprop_network():
    """Part 4's three-layer ReLU network; returns its nodes by name."""
    x = gc.input("x", (2,))
    W1 = param("W1", [[2, -3], [2, 1]])
    W2 = param("W2", [[2, 1], [0, 1]])
    W3 = param("W3", [3, -2])
    z1 = gc.matmul(x, W1, name="z1")
    a1 = gc.relu(z1, name="a1")
    z2 = gc.matmul(a1, W2, name="z2")
    a2 = gc.relu(z2, name="a2")
    H = gc.matmul(a2, W3, name="H")
    return dict(x=x, W1=W1, W2=W2, W3=W3, z1=z1, a1=a1, z2=z2, a2=a2, H=H)


def backprop_example():
    n = backprop_network()
    dW1, dW2, dW3, dz1, dz2 = gc.grad(n["H"], [n["W1"], n["W2"], n["W3"], n["z1"], n["z2"]])
    rows = [("z1", n["z1"], [6, -5]), ("a1", n["a1"], [6, 0]), ("z2", n["z2"], [12, 6]),
            ("H", n["H"], 24), ("dH/dz2", dz2, [3, -2]), ("dH/dz1", dz1, [4, 0]),
            ("dH/dW3", dW3, [12, 6]), ("dH/dW2", dW2, [[18, -12], [0, 0]]),
            ("dH/dW1", dW1, [[8, 0], [4, 0]])]
    return rows, {"x": [2, 1]}


# title -> function returning ([(quantity, node, the notes' value)], feeds)
EXERCISES = {
    "Forward pass (Lecture 22, part 1)": forward_example,
    "Exercise: a ReLU that is off passes no gradient (part 3)": relu_gate_exercise,
    "Backpropagation example (part 4)": backprop_example,
}


def build() -> dict:
    """The backprop example's graph (see the graphc.cli.render module for the convention)."""
    n = backprop_network()
    return {"outputs": [n["H"]], "loss": n["H"], "params": [n["W1"], n["W2"], n["W3"]],
            "feeds": {"x": np.array([2, 1], dtype=np.float32)}}


def run_exercise(make, backend: str) -> list:
    """[(quantity, graphc's value, the notes' value, agree?)] for one exercise."""
    rows, feeds = make()
    f = gc.compile([node for _, node, _ in rows], backend=backend)
    values = f(**{k: np.array(v, dtype=np.float32) for k, v in feeds.items()})
    return [(name, value, np.array(expected), bool(np.allclose(value, expected, atol=1e-5)))
            for (name, _, expected), value in zip(rows, values)]


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    mismatches = 0
    for title, make in EXERCISES.items():
        print(title)
        for name, value, expected, ok in run_exercise(make, args.backend):
            print(f"  {name:<10} graphc {_fmt(value):<28} notes {_fmt(expected):<28} "
                  f"{'ok' if ok else 'MISMATCH'}")
            mismatches += not ok
    print("all values agree with the notes" if not mismatches else
          f"{mismatches} values differ from the notes")
    return 1 if mismatches else 0


def _fmt(value) -> str:
    value = np.asarray(value, dtype=np.float64) + 0.0  # + 0.0 prints -0 as 0
    return np.array2string(value, precision=4,
                           suppress_small=True, separator=", ").replace("\n", "")


if __name__ == "__main__":
    sys.exit(main())
