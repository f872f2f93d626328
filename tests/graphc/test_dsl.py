"""The DSL as DESIGN.md's "API at a glance" promises it: sources, op functions,
operators and node methods, lifting of Python numbers and arrays."""

import numpy as np
import pytest

import graphc as gc
from graphc import dsl
from graphc.errors import DtypeError


def test_the_names_design_md_promises_exist():
    for name in ("input param const compile Graph exp log tanh sigmoid relu step maximum "
                 "where matmul transpose reshape sum mean max one_hot").split():
        assert callable(getattr(gc, name)), name
    for name in ("softplus leaky_relu prelu maxout softmax log_softmax logsumexp mse "
                 "binary_cross_entropy_with_logits softmax_cross_entropy dense mlp").split():
        assert callable(getattr(gc.nn, name)), name


def test_input():
    x = gc.input("x", ("batch", 2))
    assert (x.op, x.name, x.shape, x.dtype, x.ndim) == ("input", "x", ("batch", 2), "float32", 2)
    assert gc.input("y", ("batch",), dtype="int64").dtype == "int64"
    z = gc.input("z", (None, 3))
    assert isinstance(z.shape[0], str) and z.shape[0] != gc.input("w", (None, 3)).shape[0]
    with pytest.raises(ValueError, match="identifier"):
        gc.input("not a name", (2,))
    with pytest.raises(DtypeError, match="complex64"):
        gc.input("c", (2,), "complex64")


def test_param_holds_a_private_copy_of_its_value(backend):
    init = np.arange(4.0).reshape(2, 2)
    W = gc.param("W", init)
    assert W.op == "param" and W.shape == (2, 2) and W.dtype == "float32"
    assert W.value.dtype == np.float32 and W.value.flags.writeable
    init[0, 0] = 99
    assert W.value[0, 0] == 0
    np.testing.assert_array_equal(backend.run(W * 1), np.arange(4.0).reshape(2, 2))
    assert gc.param("b", [1.0, 2.0], dtype="float64").value.dtype == np.float64


def test_const_is_embedded_and_read_only(backend):
    c = gc.const([[1, 2], [3, 4]], dtype="float32")
    assert c.op == "const" and c.shape == (2, 2) and not c.value.flags.writeable
    np.testing.assert_array_equal(backend.run(c + 1), [[2, 3], [4, 5]])


def test_operators_and_reflected_operators(backend):
    x = gc.input("x", (3,))
    v = np.array([1.0, 2.0, 4.0], np.float32)
    cases = {
        "add": (x + 2, v + 2), "radd": (2 + x, 2 + v), "sub": (x - 1, v - 1),
        "rsub": (1 - x, 1 - v), "mul": (x * 3, v * 3), "rmul": (np.float64(3) * x, v * 3),
        "div": (x / 2, v / 2), "rdiv": (2 / x, 2 / v), "pow": (x ** 2, v ** 2),
        "rpow": (2 ** x, 2 ** v), "neg": (-x, -v), "gt": (x > 2, v > 2),
        "ge": (x >= 2, v >= 2), "lt": (x < 2, v < 2), "le": (x <= 2, v <= 2),
        "rgt": (2 < x, 2 < v), "abs": (abs(x - 2), abs(v - 2)), "array_left": (np.array([1.0, 1.0, 1.0]) + x, v + 1),
    }
    nodes = [node for node, _ in cases.values()]
    assert all(isinstance(n, gc.Node) for n in nodes)
    assert (x + 2).op == "add" and (2 - x).op == "sub" and (-x).op == "neg"
    for (name, (_, expected)), out in zip(cases.items(), backend.run(nodes, x=v)):
        np.testing.assert_allclose(out, expected, rtol=1e-6, err_msg=name)
        assert out.dtype == (np.bool_ if expected.dtype == bool else np.float32), name


def test_eq_and_ne_are_elementwise_as_in_numpy(backend):
    # The reported bug: x == 0 compared identity, so where() got a constant False.
    x, y = gc.input("x", (4,)), gc.input("y", (4,))
    v = np.array([0.0, 2.0, 0.0, np.nan], np.float32)
    w = np.array([0.0, 3.0, 1.0, np.nan], np.float32)
    cases = {
        "where": (gc.where(x == 0, 1.0, x), np.where(v == 0, 1.0, v)),
        "eq": (x == y, v == w), "ne": (x != y, v != w),  # nan != nan
        "ne_self": (x != x, v != v), "eq_self": (x == x, v == v),
        "req": (0 == x, 0 == v), "rne": (np.float32(2) != x, 2 != v),
        "array_left": (np.zeros(4) == x, v == 0), "fn": (gc.ne(x, 2.0), v != 2),
    }
    nodes = [node for node, _ in cases.values()]
    assert all(isinstance(n, gc.Node) for n in nodes)
    assert (x == y).op == "eq" and (x != y).op == "ne" and (0 == x).inputs[0] is x
    for (name, (_, expected)), out in zip(cases.items(), backend.run(nodes, x=v, y=w)):
        np.testing.assert_array_equal(out, expected, err_msg=name)
        assert out.dtype == expected.dtype, name


def test_nodes_stay_dict_keys_and_set_members_by_identity():
    x = gc.input("x", (2,))
    a, b = x + 1, x + 1  # equal values, different nodes
    table = {a: "a", b: "b", x: "x"}
    assert table[a] == "a" and table[b] == "b" and table[x] == "x"
    assert len({a, b, x, a}) == 3 and a in {a} and b not in {a}
    assert hash(a) == object.__hash__(a)


def test_a_node_has_no_truth_value_and_says_what_to_use():
    x = gc.input("x", (2,))
    for ask in (lambda: bool(x == 0), lambda: x != 1 or None, lambda: not x):
        with pytest.raises(TypeError, match=r"no truth value.*gc\.where.*`is`") as info:
            ask()
        assert "test_dsl.py" in str(info.value)  # where the node was made
    with pytest.raises(TypeError, match="input 'x'"):
        if x:
            pass


def test_matmul_operator_with_arrays_on_either_side(backend):
    x = gc.input("x", (2, 3))
    A = np.arange(6.0).reshape(3, 2)
    B = np.arange(4.0).reshape(2, 2)
    v = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    out1, out2 = backend.run([x @ A, B @ x], x=v)
    np.testing.assert_allclose(out1, v @ A)
    np.testing.assert_allclose(out2, B @ v)


def test_node_methods(backend):
    x = gc.input("x", (2, 3))
    v = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    nodes = [x.sum(), x.sum(1, keepdims=True), x.mean(0), x.max(axis=1), x.T,
             x.reshape(3, 2), x.reshape((6,)), x.transpose(1, 0), x.transpose(),
             x.astype("int32"), x[1], x[:, 1:]]
    expected = [v.sum(), v.sum(1, keepdims=True), v.mean(0), v.max(axis=1), v.T,
                v.reshape(3, 2), v.reshape(6), v.transpose(1, 0), v.transpose(),
                v.astype(np.int32), v[1], v[:, 1:]]
    for node, out, want in zip(nodes, backend.run(nodes, x=v), expected):
        assert node.shape == want.shape
        np.testing.assert_allclose(out, want, rtol=1e-6)
    assert x.astype("int32").dtype == "int32"


def test_lift():
    x = gc.input("x", (2,), "float64")
    assert dsl.lift(x) is x
    assert dsl.lift(2.5).dtype == "float32" and dsl.lift(2.5).op == "const"
    assert dsl.lift(2, like=x).dtype == "float64"
    assert dsl.lift(3, like=gc.input("i", (2,), "int32")).dtype == "int32"
    assert dsl.lift(np.arange(3)).dtype == "int64"


def test_apply_with_tags():
    x = gc.input("x", (2,))
    y = dsl.apply("exp", x, tags={"grad"})
    assert y.tags == frozenset({"grad"}) and y.op == "exp" and y.type == x.type


def test_reductions_with_symbolic_dims_keep_them():
    x = gc.input("x", ("batch", 3))
    assert x.sum(1).shape == ("batch",) and x.mean(0).shape == (3,)
    assert x.max(keepdims=True).shape == (1, 1)


def test_the_design_example_runs_forward(backend):
    rng = np.random.default_rng(0)
    x = gc.input("x", ("batch", 2))
    y = gc.input("y", ("batch",), dtype="int64")
    W1 = gc.param("W1", rng.standard_normal((2, 8)) * 0.5)
    b1 = gc.param("b1", np.zeros(8))
    W2 = gc.param("W2", rng.standard_normal((8, 2)) * 0.5)
    b2 = gc.param("b2", np.zeros(2))
    h = gc.relu(x @ W1 + b1)
    logits = h @ W2 + b2
    loss = gc.nn.softmax_cross_entropy(logits, y)
    assert loss.shape == () and loss.dtype == "float32"
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    Y = np.array([0, 1, 1, 0])
    f = backend.compile([loss, logits])
    loss_v, logits_v = f(x=X, y=Y)
    hidden = np.maximum(X @ W1.value + b1.value, 0)
    want_logits = hidden @ W2.value + b2.value
    np.testing.assert_allclose(logits_v, want_logits, rtol=1e-5)
    log_p = want_logits - np.log(np.exp(want_logits).sum(1, keepdims=True))
    assert loss_v == pytest.approx(-log_p[np.arange(4), Y].mean(), rel=1e-5)
    print(gc.Graph([loss]))  # the IR as text prints


def test_a_function_caches_one_executable_per_binding_its_backend_fixes(backend):
    # triton builds per shape; numpy's and the reference's builds take the batch size at
    # run time (backends/base.py fixed_dims): one serves both sizes
    x = gc.input("x", ("batch", 2))
    f = backend.compile(x.sum(1))
    for n in (1, 3, 1, 3):
        assert f(x=np.ones((n, 2))).shape == (n,)
    assert len(f._executables) == (2 if backend.name == "triton" else 1)
    assert "sum" in f.source and f.graph is not None


@pytest.mark.parametrize("make", [lambda v: gc.param("W", v), gc.const])
@pytest.mark.parametrize("value", ["abc", [[1.0, 2.0], [3.0]]])
def test_a_value_that_is_not_numeric_data_is_a_dtype_error(make, value):
    with pytest.raises(DtypeError, match="not a numeric array|str96 is not supported") as info:
        make(value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None
