"""The lecture notes' backprop examples (../shared/seeds), computed with gc.grad.

Each test builds the notes' model, asks gc.grad for the error signals the notes derive by
hand (v-bar = dL/dv for every variable v, delta = dc/dz), and checks them against the
notes' closed forms or their exact numbers.
"""

import numpy as np
import pytest

import graphc as gc

def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


# --- seed 002: the backprop exercise with its exact numbers ----------------------------

def test_seed002_exercise_gradient_entries(backend):
    """W1=[[2,-3],[2,1]], W2=[[2,1],[0,1]], W3=[[3],[-2]], x=(2,1), ReLU, linear output,
    no biases: z1 = (6,-5), a1 = (6,0), z2 = a2 = (12,6), H = 24."""
    x = gc.const([2.0, 1.0], "float64")
    W1 = gc.param("W1", [[2, -3], [2, 1]], "float64")
    W2 = gc.param("W2", [[2, 1], [0, 1]], "float64")
    W3 = gc.param("W3", [[3], [-2]], "float64")
    z1 = x @ W1                          # z = W^T x for a column x is x @ W for a row x
    a1 = gc.relu(z1)
    z2 = a1 @ W2
    a2 = gc.relu(z2)
    H = gc.sum(a2 @ W3)
    wrt = [W1, W2, W3, z1, a1, z2, a2]
    values = backend.run([H, z1, a1, z2] + gc.grad(H, wrt))
    H_v, z1_v, a1_v, z2_v, dW1, dW2, dW3, dz1, da1, dz2, da2 = values
    np.testing.assert_array_equal(z1_v, [6, -5])
    np.testing.assert_array_equal(a1_v, [6, 0])
    np.testing.assert_array_equal(z2_v, [12, 6])
    assert H_v == 24
    np.testing.assert_array_equal(da2, [3, -2])          # dH/da2 = W3
    np.testing.assert_array_equal(dz2, [3, -2])          # ReLU'(12) = ReLU'(6) = 1
    np.testing.assert_array_equal(dW3, [[12], [6]])      # a2 (x) dH/dz3
    np.testing.assert_array_equal(dW2, [[18, -12], [0, 0]])  # a1 (x) dz2
    np.testing.assert_array_equal(da1, [4, -2])          # sum_k dz2_k W2_jk
    np.testing.assert_array_equal(dz1, [4, 0])           # ReLU'(-5) = 0 blocks unit 2
    np.testing.assert_array_equal(dW1, [[8, 0], [4, 0]])     # x (x) dz1


def test_seed002_forward_example_and_its_gradient(backend):
    """W1=[[2,-1,0],[4,5,2]], b1=(3,-2,-2), W2=(3,2,-4), b2=-4, x=(3,-1), ReLU, linear
    output: z1 = (5,-10,-4), H = 11; only hidden unit 1 is active."""
    x = gc.const([3.0, -1.0], "float64")
    W1 = gc.param("W1", [[2, -1, 0], [4, 5, 2]], "float64")
    b1 = gc.param("b1", [3, -2, -2], "float64")
    W2 = gc.param("W2", [[3], [2], [-4]], "float64")
    b2 = gc.param("b2", [-4], "float64")
    z1 = x @ W1 + b1
    H = gc.sum(gc.relu(z1) @ W2 + b2)
    H_v, z1_v, dW1, db1, dW2, db2 = backend.run([H, z1] + gc.grad(H, [W1, b1, W2, b2]))
    np.testing.assert_array_equal(z1_v, [5, -10, -4])
    assert H_v == 11
    np.testing.assert_array_equal(dW2, [[5], [0], [0]])
    np.testing.assert_array_equal(db2, [1])
    np.testing.assert_array_equal(db1, [3, 0, 0])
    np.testing.assert_array_equal(dW1, [[9, 0, 0], [-3, 0, 0]])


# --- seed 003: logistic least squares with L2 regularisation ---------------------------

def test_seed003_logistic_least_squares_error_signals(backend):
    """z = wx + b, y = s(z), L = (y-t)^2/2, R = w^2/2, L_reg = L + lambda R. The notes'
    backward pass: Lreg-bar = 1, R-bar = lambda, L-bar = 1, y-bar = y - t,
    z-bar = y-bar s'(z), w-bar = z-bar x + R-bar w (two paths: fan-out), b-bar = z-bar."""
    x_v, t_v, w_v, b_v, lam = 1.5, 1.0, -0.4, 0.3, 0.1
    x = gc.input("x", (), dtype="float64")
    t = gc.input("t", (), dtype="float64")
    w = gc.param("w", w_v, "float64")
    b = gc.param("b", b_v, "float64")
    z = w * x + b
    y = gc.sigmoid(z)
    L = 0.5 * (y - t) ** 2
    R = 0.5 * w ** 2
    L_reg = L + lam * R
    signals = gc.grad(L_reg, [L_reg, R, L, y, z, w, b])
    got = dict(zip(["Lreg", "R", "L", "y", "z", "w", "b"],
                   backend.run(signals, x=x_v, t=t_v)))
    z_v = w_v * x_v + b_v
    y_v = _sigmoid(z_v)
    y_bar = y_v - t_v
    z_bar = y_bar * y_v * (1 - y_v)
    expected = {"Lreg": 1.0, "R": lam, "L": 1.0, "y": y_bar, "z": z_bar,
                "w": z_bar * x_v + lam * w_v, "b": z_bar}
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-14, err_msg=name)
    # The regulariser's path is really there: without it w-bar is z-bar x alone.
    assert abs(got["w"] - z_bar * x_v) == pytest.approx(lam * abs(w_v))


def test_seed003_vectorised_mlp_backward_pass(backend):
    """z = W1 x + b1, h = s(z), y = W2 h + b2, L = ||t - y||^2 / 2 (column vectors), and
    the notes' vectorised backward pass: y-bar = y - t, W2-bar = y-bar h^T, b2-bar = y-bar,
    h-bar = W2^T y-bar, z-bar = h-bar o s'(z), W1-bar = z-bar x^T, b1-bar = z-bar."""
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal(3), rng.standard_normal(2)
    x = gc.input("x", (3,), dtype="float64")
    t = gc.input("t", (2,), dtype="float64")
    W1 = gc.param("W1", rng.standard_normal((4, 3)), "float64")
    b1 = gc.param("b1", rng.standard_normal(4), "float64")
    W2 = gc.param("W2", rng.standard_normal((2, 4)), "float64")
    b2 = gc.param("b2", rng.standard_normal(2), "float64")
    z = W1 @ x + b1
    h = gc.sigmoid(z)
    y = W2 @ h + b2
    L = 0.5 * gc.sum((t - y) ** 2)
    got = backend.run(gc.grad(L, [y, W2, b2, h, z, W1, b1]), x=X, t=T)
    Z = W1.value @ X + b1.value
    H = _sigmoid(Z)
    y_bar = W2.value @ H + b2.value - T
    h_bar = W2.value.T @ y_bar
    z_bar = h_bar * H * (1 - H)
    expected = [y_bar, np.outer(y_bar, H), y_bar, h_bar, z_bar, np.outer(z_bar, X), z_bar]
    for name, g, e in zip(["y", "W2", "b2", "h", "z", "W1", "b1"], got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, err_msg=name)


# --- seed 001: output error signals and the delta rule ---------------------------------

def test_seed001_binary_cross_entropy_delta(backend):
    """c = -log P(y|x) = softplus((1 - 2y) z), so delta = dc/dz = (1-2y) s((1-2y) z)."""
    Z = np.array([-3.0, -0.5, 0.0, 0.7, 4.0, 2.0])
    Y = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    z = gc.input("z", (6,), dtype="float64")
    y = gc.input("y", (6,), dtype="float64")
    cost = gc.sum(gc.nn.softplus(z) - y * z)  # the summed per-example costs c^(n)
    mean_cost = gc.nn.binary_cross_entropy_with_logits(z, y)
    delta, mean_delta = backend.run([gc.grad(cost, z), gc.grad(mean_cost, z)], z=Z, y=Y)
    expected = (1 - 2 * Y) * _sigmoid((1 - 2 * Y) * Z)
    np.testing.assert_allclose(delta, expected, rtol=1e-14)
    np.testing.assert_allclose(mean_delta, expected / 6, rtol=1e-14)
    np.testing.assert_allclose(delta, _sigmoid(Z) - Y, rtol=1e-14)  # the same, rho - y


def test_seed001_softmax_cross_entropy_delta(backend):
    """Categorical output: delta_j = rho_j - 1 for the true class j, rho_j otherwise,
    i.e. delta = rho - one_hot(y)."""
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((5, 4)) * 2
    Y = np.array([0, 3, 1, 1, 2])
    z = gc.input("z", ("batch", 4), dtype="float64")
    y = gc.input("y", ("batch",), dtype="int64")
    loss = gc.nn.softmax_cross_entropy(z, y)  # mean over the batch
    (delta,) = backend.run([gc.grad(loss, z)], z=Z, y=Y)
    rho = np.exp(Z) / np.exp(Z).sum(1, keepdims=True)
    np.testing.assert_allclose(delta * 5, rho - np.eye(4)[Y], rtol=1e-12, atol=1e-15)


def test_seed001_delta_rule_on_the_xor_network(backend):
    """The notes' batched backward pass for a(1) = ReLU(A0 W1), rho = s(A1 w2):
    Delta(L) = (1-2y) s((1-2y) z(L)); Delta(k) = act'(Z(k)) o (Delta(k+1) W(k+1)^T);
    dC/dW(k) = sum_n a(k-1,n) (x) delta(k,n) = A(k-1)^T Delta(k)."""
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    Y = np.array([0.0, 1.0, 1.0, 0.0])
    rng = np.random.default_rng(2)
    a0 = gc.input("x", ("batch", 2), dtype="float64")
    y = gc.input("y", ("batch",), dtype="float64")
    W1 = gc.param("W1", rng.standard_normal((2, 3)), "float64")
    w2 = gc.param("w2", rng.standard_normal((3, 1)), "float64")
    Z1 = a0 @ W1
    A1 = gc.relu(Z1)
    zL = gc.squeeze(A1 @ w2, -1)
    cost = gc.sum(gc.nn.softplus((1 - 2 * y) * zL))  # C = sum_n c(n)
    got = backend.run(gc.grad(cost, [zL, Z1, W1, w2]), x=X, y=Y)
    Z1_v = X @ W1.value
    A1_v = np.maximum(Z1_v, 0)
    zL_v = (A1_v @ w2.value)[:, 0]
    delta_L = (1 - 2 * Y) * _sigmoid((1 - 2 * Y) * zL_v)
    delta_1 = (Z1_v > 0) * (delta_L[:, None] @ w2.value.T)
    expected = [delta_L, delta_1, X.T @ delta_1, A1_v.T @ delta_L[:, None]]
    for name, g, e in zip(["delta(L)", "Delta(1)", "dW1", "dw2"], got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, err_msg=name)


def test_seed001_gaussian_output_delta(backend):
    """A linear output with squared error ||y - z||^2 has delta = 2 (z - y)."""
    z = gc.input("z", (3,), dtype="float64")
    Y = np.array([1.0, -2.0, 0.5])
    Z = np.array([0.5, 0.0, 0.5])
    (delta,) = backend.run([gc.grad(gc.sum((gc.const(Y, "float64") - z) ** 2), z)], z=Z)
    np.testing.assert_allclose(delta, 2 * (Z - Y))
