"""A forward computation: seed 002's worked example, a ReLU layer and a linear output.

x = (3, -1), W1 = [[2, -1, 0], [4, 5, 2]], b1 = (3, -2, -2), W2 = (3, 2, -4), b2 = -4:
the hidden pre-activations are z1 = W1^T x + b1 = (5, -10, -4), a1 = ReLU(z1) = (5, 0, 0),
and the output is z2 = W2^T a1 + b2 = 11.
"""

import numpy as np

import graphc as gc


def build():
    x = gc.input("x", (None, 2))
    W1 = gc.param("W1", [[2, -1, 0], [4, 5, 2]])
    b1 = gc.param("b1", [3, -2, -2])
    W2 = gc.param("W2", [[3], [2], [-4]])
    b2 = gc.param("b2", [-4])
    z1 = x @ W1 + b1
    a1 = gc.relu(z1)
    z2 = a1 @ W2 + b2
    return x, z1, a1, z2


def main():
    x, z1, a1, z2 = build()
    print(gc.Graph([z2]))
    f = gc.compile([z1, a1, z2], backend="reference")
    z1_v, a1_v, z2_v = f(x=np.array([[3.0, -1.0]]))
    print("z1 =", z1_v[0], " a1 =", a1_v[0], " z2 =", z2_v[0])


if __name__ == "__main__":
    main()
