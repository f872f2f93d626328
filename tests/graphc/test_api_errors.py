"""API misuse: gc.compile, gc.grad and the optimizers given the wrong kind of argument
raise a GraphcError that says what was expected and names the argument at fault, never
an AttributeError or TypeError from deep inside."""

import re

import numpy as np
import pytest

import graphc as gc
from graphc.errors import FeedError, GradError, GraphcError, UsageError


@pytest.fixture
def model():
    x = gc.input("x", (2, 3))
    W = gc.param("W", np.ones((3, 4)))
    return x, W, (x @ W).sum()


# --- gc.compile ------------------------------------------------------------------------

@pytest.mark.parametrize("outputs, words", [
    (None, "None"),
    (np.ones(3), "a numpy.ndarray (array([1., 1., 1.]))"),
    (3.0, "a float (3.0)"),
    ("y", "a str ('y')"),
    ({"y": 1}, "a dict ({'y': 1})"),
])
def test_compile_outputs_must_be_nodes(outputs, words):
    expected = "gc.compile: outputs must be a graph node or a list of nodes, got " + words
    with pytest.raises(UsageError, match=re.escape(expected)):
        gc.compile(outputs)


def test_compile_names_the_output_that_is_not_a_node(model):
    x, _, y = model
    with pytest.raises(UsageError, match=r"gc\.compile: outputs\[1\] is a float \(3\.0\), "
                                         r"not a graph node"):
        gc.compile([x, 3.0])


@pytest.mark.parametrize("make_updates, words", [
    (lambda x, W: {W: 3.0}, r"the update of param 'W' must be a graph node .* got a "
                            r"float \(3\.0\)"),
    (lambda x, W: {W: np.ones((3, 4))}, r"the update of param 'W' .* got a numpy\.ndarray"),
    (lambda x, W: {x: W}, r"the key input 'x' : f32\[2,3\] \(made at test_api_errors\.py:"
                          r"\d+\) is not a param"),
    (lambda x, W: {3: W}, r"the key an int \(3\) is not a param"),
    (lambda x, W: [(W, W)], r"updates must be a dict \{param: new value node\}, got a list"),
])
def test_compile_updates_must_map_params_to_nodes(model, make_updates, words):
    x, W, y = model
    with pytest.raises(UsageError, match=r"gc\.compile: .*" + words):
        gc.compile(y, updates=make_updates(x, W))


def test_compile_inputs_must_be_input_nodes(model):
    x, _, y = model
    with pytest.raises(FeedError, match=r"gc\.compile: inputs\[0\] is an int \(3\)"):
        gc.compile(y, inputs=[3])
    with pytest.raises(FeedError, match=r"inputs must be a graph node or a list of nodes, "
                                        r"got a str \('x'\)"):
        gc.compile(y, inputs="x")
    # one input node is a list of one, as one output node is
    f = gc.compile(y, inputs=x)
    assert f(np.ones((2, 3), np.float32)) == 24


@pytest.mark.parametrize("options, words", [
    ({"backend": "gpu"}, "unknown backend 'gpu'; choose one of reference, numpy, triton"),
    ({"opt": "O3"}, "unknown optimization level 'O3'; choose one of O0, O1, O2"),
    ({"opt": 2}, "unknown optimization level 2"),
])
def test_compile_names_an_unknown_backend_or_level(model, options, words):
    with pytest.raises(GraphcError, match=words):
        gc.compile(model[2], **options)


# --- gc.grad ---------------------------------------------------------------------------

def test_grad_of_a_non_node(model):
    x, _, _ = model
    with pytest.raises(GradError, match=r"gc\.grad: y must be a graph node \(the value to "
                                        r"differentiate\), got a float \(3\.0\)"):
        gc.grad(3.0, x)


@pytest.mark.parametrize("wrt, words", [
    (3.0, r"wrt must be a graph node or a list of nodes, got a float \(3\.0\)"),
    (None, "wrt must be a graph node or a list of nodes, got None"),
    ("W", r"got a str \('W'\)"),
])
def test_grad_wrt_must_be_nodes(model, wrt, words):
    with pytest.raises(GradError, match=r"gc\.grad: .*" + words):
        gc.grad(model[2], wrt)


def test_grad_names_the_wrt_entry_that_is_not_a_float_node(model):
    x, W, y = model
    with pytest.raises(GradError, match=r"wrt\[1\] is a float \(3\.0\), not a graph node"):
        gc.grad(y, [W, 3.0])
    labels = gc.input("labels", (2,), "int64")
    with pytest.raises(GradError, match="input 'labels' : i64.*only float values"):
        gc.grad(y, [W, labels])


@pytest.mark.parametrize("seed, words", [
    ("a", "gc.grad: seed expects float32, got <U1 values"),
    (object(), "gc.grad: seed expects float32, got object values"),
    ([[1.0], [2.0, 3.0]], "gc.grad: seed: the value is not an array"),
])
def test_grad_seed_must_be_numbers_or_a_node(seed, words):
    x = gc.input("x", (3,))
    with pytest.raises(GradError, match=re.escape(words)):
        gc.grad(x * 2, x, seed=seed)


def test_grad_with_a_repeated_wrt_gives_the_gradient_at_each_place(model, backend):
    # as torch.autograd.grad(y, [W, W]) does
    x, W, y = model
    g1, g2 = gc.grad(y, [W, W])
    X = np.arange(6.0).reshape(2, 3)
    a, b = backend.run([g1, g2], x=X)
    np.testing.assert_array_equal(a, np.broadcast_to(X.sum(0)[:, None], (3, 4)))
    np.testing.assert_array_equal(b, a)


# --- optimizers ------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("make_params, words", [
    (lambda x, W: [], r"params is empty"),
    (lambda x, W: [W, x], r"input 'x' : f32\[2,3\] \(made at test_api_errors\.py:\d+\) is "
                          r"not a param"),
    (lambda x, W: [W, W], r"param 'W' is listed twice"),
    (lambda x, W: [3.0], r"params\[0\] is a float \(3\.0\), not a graph node"),
    (lambda x, W: None, r"params must be a graph node or a list of nodes, got None"),
])
def test_optimizers_check_their_params(model, optimizer, make_params, words):
    x, W, y = model
    with pytest.raises(UsageError, match=rf"gc\.optim\.{optimizer}: {words}"):
        getattr(gc.optim, optimizer)(y, make_params(x, W), lr=0.1)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizers_take_one_param_as_a_list_of_one(model, optimizer, backend):
    x, W, y = model
    step = backend.compile(y, updates=getattr(gc.optim, optimizer)(y, W, lr=0.5))
    step(x=np.ones((2, 3)))
    assert (W.value < 1).all()


def test_backend_options_are_checked_and_reach_the_build():
    x = gc.input("x", (4, 3))
    out = gc.sum(gc.tanh(x) * 2 + 1, axis=1)
    with pytest.raises(gc.GraphcError, match="backend 'numpy' has no option 'c_kernel'; its "
                                             "options are blas, c_kernels, cc, chunk_elements"):
        gc.compile(out, options={"c_kernel": False})
    with pytest.raises(gc.GraphcError, match="backend 'reference' has no option"):
        gc.compile(out, backend="reference", options={"blas": False})
    value = np.arange(12.0).reshape(4, 3)
    with_c = gc.compile(out)
    without = gc.compile(out, options={"c_kernels": False})
    np.testing.assert_allclose(with_c(x=value), without(x=value), rtol=1e-6)
    assert "# C:" not in without.source
