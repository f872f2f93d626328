"""The forward computations worked in the lecture notes (/work/shared/seeds/000-004),
computed through the DSL with the notes' own numbers. Where a note describes a network
without giving weights (the XOR networks of 001, 003, 004), the weights are the usual
textbook ones and say so."""

import math

import numpy as np
import pytest

import graphc as gc


# --- seed 002: "Example", g = ReLU, linear output ------------------------------------------

def test_seed_002_worked_example_exact_numbers(backend):
    x = gc.input("x", (2,))
    W1 = gc.param("W1", [[2, -1, 0], [4, 5, 2]])
    b1 = gc.param("b1", [3, -2, -2])
    W2 = gc.param("W2", [[3], [2], [-4]])
    b2 = gc.param("b2", [-4])
    z1 = x @ W1 + b1               # z^(1) = W^(1)T x + b^(1)
    a1 = gc.relu(z1)
    z2 = a1 @ W2 + b2              # linear output: H = z^(2)
    z1_v, a1_v, out = backend.run([z1, a1, z2], x=np.array([3.0, -1.0]))
    np.testing.assert_array_equal(z1_v, [5, -10, -4])
    np.testing.assert_array_equal(a1_v, [5, 0, 0])
    np.testing.assert_array_equal(out, [11])


def test_seed_002_worked_example_batched_through_nn_dense(backend):
    x = gc.input("x", ("batch", 2))
    W1 = gc.param("W1", [[2, -1, 0], [4, 5, 2]])
    b1 = gc.param("b1", [3, -2, -2])
    W2 = gc.param("W2", [[3], [2], [-4]])
    b2 = gc.param("b2", [-4])
    out = gc.nn.dense(gc.nn.dense(x, W1, b1, gc.relu), W2, b2)
    # the notes' point twice, and the origin: z1 = b1 = (3, -2, -2), a1 = (3, 0, 0), H = 5
    X = np.array([[3.0, -1.0], [3.0, -1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(backend.run(out, x=X), [[11], [11], [5]])


def test_seed_002_backprop_example_forward_pass(backend):
    # W1 = ((2, -3), (2, 1)), W2 = ((2, 1), (0, 1)), W3 = (3, -2)^T, x = (2, 1), ReLU
    x = gc.input("x", (2,))
    W1 = gc.param("W1", [[2, -3], [2, 1]])
    W2 = gc.param("W2", [[2, 1], [0, 1]])
    W3 = gc.param("W3", [[3], [-2]])
    z1 = x @ W1
    a1 = gc.relu(z1)
    z2 = a1 @ W2
    a2 = gc.relu(z2)
    H = gc.relu(a2 @ W3)
    values = backend.run([z1, a1, z2, a2, H], x=np.array([2.0, 1.0]))
    for got, want in zip(values, [[6, -5], [6, 0], [12, 6], [12, 6], [24]]):
        np.testing.assert_array_equal(got, want)


def test_seed_002_exercise_unit_is_inactive(backend):
    # W11 = -2, W21 = -5, W31 = 2, x = (3, 2, -2), biases 0: z = -20, so ReLU gives 0
    # (which is why the exercise's derivative is 0)
    x = gc.input("x", (3,))
    w = gc.param("w", [-2, -5, 2])
    z = x @ w
    z_v, a_v = backend.run([z, gc.relu(z)], x=np.array([3.0, 2.0, -2.0]))
    assert z_v == -20 and a_v == 0


# --- seed 003: activation functions, XOR with hard thresholds, chain-rule example ----------

def test_seed_003_activation_functions_match_their_formulas(backend):
    z = gc.input("z", (7,), "float64")
    v = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    linear, relu, soft_relu, threshold, logistic, tanh = backend.run(
        [z * 1, gc.relu(z), gc.nn.softplus(z), gc.step(z), gc.sigmoid(z), gc.tanh(z)], z=v)
    np.testing.assert_array_equal(linear, v)
    np.testing.assert_array_equal(relu, np.maximum(0, v))
    np.testing.assert_allclose(soft_relu, np.log(1 + np.exp(v)), rtol=1e-14)
    np.testing.assert_array_equal(threshold, np.where(v > 0, 1, 0))  # 0 at z = 0
    np.testing.assert_allclose(logistic, 1 / (1 + np.exp(-v)), rtol=1e-14)
    np.testing.assert_allclose(tanh, (np.exp(v) - np.exp(-v)) / (np.exp(v) + np.exp(-v)),
                               rtol=1e-14)


XOR_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR = [0, 1, 1, 0]


def test_seed_003_xor_from_hard_threshold_units(backend):
    # h1 computes x1 OR x2, h2 computes x1 AND x2, y computes h1 AND NOT h2
    # (weights ours: OR fires above 0.5, AND above 1.5)
    x = gc.input("x", ("batch", 2))
    W = gc.param("W", [[1, 1], [1, 1]])
    b = gc.param("b", [-0.5, -1.5])
    h = gc.step(x @ W + b)
    y = gc.step(h @ np.array([1.0, -1.0]) - 0.5)
    h_v, y_v = backend.run([h, y], x=XOR_INPUTS)
    np.testing.assert_array_equal(h_v[:, 0], [0, 1, 1, 1])  # OR
    np.testing.assert_array_equal(h_v[:, 1], [0, 0, 0, 1])  # AND
    np.testing.assert_array_equal(y_v, XOR)


@pytest.mark.parametrize("t_value", [0.0, 0.7, 2.0])
def test_seed_003_multivariate_chain_rule_example_forward(t_value, backend):
    # f(x, y) = y + e^(xy), x(t) = cos t, y(t) = t^2
    # graphc has no cos primitive, so x(t) is fed; y and f are built in the graph
    t = gc.input("t", (), "float64")
    xt = gc.input("xt", (), "float64")
    y = t ** 2
    f = y + gc.exp(xt * y)
    out = backend.run(f, t=np.float64(t_value), xt=np.float64(math.cos(t_value)))
    want = t_value ** 2 + math.exp(math.cos(t_value) * t_value ** 2)
    assert out == pytest.approx(want, rel=1e-14)


def test_seed_003_regularised_logistic_least_squares_forward(backend):
    # z = wx + b, y = sigma(z), L = 1/2 (y - t)^2, R = 1/2 w^2, L_reg = L + lambda R
    x, t = gc.input("x", (), "float64"), gc.input("t", (), "float64")
    w, b = gc.param("w", 0.5, "float64"), gc.param("b", -1.0, "float64")
    lam = 0.1
    y = gc.sigmoid(w * x + b)
    L = 0.5 * (y - t) ** 2
    R = 0.5 * w ** 2
    out = backend.run(L + lam * R, x=np.float64(3.0), t=np.float64(1.0))
    s = 1 / (1 + math.exp(-(0.5 * 3.0 - 1.0)))
    assert out == pytest.approx(0.5 * (s - 1) ** 2 + lam * 0.5 * 0.25, rel=1e-14)


# --- seed 001: XOR with a ReLU hidden layer; 004: two-layer step network ---------------

def test_seed_001_xor_with_a_relu_hidden_layer_and_sigmoid_output(backend):
    # a1 = max(0, W^T x + c), a2 = rho = sigma(w^T a1); prediction 1(rho > 0.5)
    # (weights: the classic solution W = ones, c = (0, -1), w = (1, -2))
    x = gc.input("x", ("batch", 2))
    W = gc.param("W", [[1, 1], [1, 1]])
    c = gc.param("c", [0, -1])
    w = gc.param("w", [1, -2])
    a1 = gc.relu(x @ W + c)
    rho = gc.sigmoid(a1 @ w)
    prediction = gc.cast(rho > 0.5, "int64")
    a1_v, rho_v, pred_v = backend.run([a1, rho, prediction], x=XOR_INPUTS)
    np.testing.assert_array_equal(a1_v, [[0, 0], [1, 0], [1, 0], [2, 1]])  # merged points
    np.testing.assert_allclose(rho_v, 1 / (1 + np.exp(-np.array(XOR, float))), rtol=1e-6)
    np.testing.assert_array_equal(pred_v, XOR)


def test_seed_004_two_layer_step_network(backend):
    # z_H = W_H x + b_H, u_H = [z_H > 0], z_O = W_O u_H + b_O, u_O = [z_O > 0]
    # (the notes' column-vector form: W_H is N_H x N_I; weights ours, computing XOR)
    x = gc.input("x", (2, "batch"))             # examples as columns
    W_H = gc.param("W_H", [[1, 1], [1, 1]])
    b_H = gc.param("b_H", [[-0.5], [-1.5]])
    W_O = gc.param("W_O", [[1, -1]])
    b_O = gc.param("b_O", -0.5)
    u_H = gc.cast(W_H @ x + b_H > 0, "float32")
    u_O = W_O @ u_H + b_O > 0
    assert u_O.shape == (1, "batch") and u_O.dtype == "bool"
    np.testing.assert_array_equal(backend.run(u_O, x=XOR_INPUTS.T)[0], np.array(XOR, bool))


# --- seed 000: a layer is g(W^T x + b), unit by unit or all at once ----------------------

def test_seed_000_a_layer_stacks_its_units(backend):
    # a_i = g(w_i^T x + b_i) for each unit i equals a = g(W^T x + b), W's columns the w_i
    x = gc.input("x", (2,))
    W = gc.param("W", [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    b = gc.param("b", [0.1, -0.2, 0.3])
    layer = gc.sigmoid(W.T @ x + b)
    units = [gc.sigmoid(W[:, i] @ x + b[i]) for i in range(3)]
    v = np.array([2.0, -1.0])
    layer_v, *unit_v = backend.run([layer] + units, x=v)
    np.testing.assert_allclose(layer_v, unit_v, rtol=1e-6)
    np.testing.assert_allclose(layer_v, 1 / (1 + np.exp(-(W.value.T @ v + b.value))), rtol=1e-6)
