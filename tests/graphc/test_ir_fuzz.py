"""The text IR of real graphs, an MLP's Adam training step and its O2-compiled, fused and
scheduled form (`f.graph`): each prints, parses and prints back identically (the
schedule is kept), and hypothesis's mutations of that text (lines deleted, duplicated,
swapped; tokens, numbers, shapes and dtypes changed; the text cut short; junk put in)
give either a graphc error or a graph that prints back identically: never a raw
exception, a hang (each example has a deadline) or a large allocation (tracemalloc)."""

import functools
import re
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import ir, ops
from graphc.errors import GraphcError
from graphc.types import SHORT_TO_DTYPE

# The fuzzed parses may make this much of the values the text does not hold (param
# zeros, const fills), and none may use much more memory than that.
VALUE_BYTES = 4 * 2**20
PEAK_BYTES = 48 * 2**20


@functools.lru_cache(maxsize=None)
def training_step():
    """(the step's graph, its O2 form) for a 4-8-3 MLP, softmax cross-entropy and Adam."""
    rng = np.random.default_rng(0)
    x, y = gc.input("x", ("batch", 4)), gc.input("y", ("batch",), dtype="int64")
    params = [gc.param("W1", rng.standard_normal((4, 8))), gc.param("b1", np.zeros(8)),
              gc.param("W2", rng.standard_normal((8, 3))), gc.param("b2", np.zeros(3))]
    W1, b1, W2, b2 = params
    loss = gc.nn.softmax_cross_entropy(gc.relu(x @ W1 + b1) @ W2 + b2, y)
    updates = gc.optim.adam(loss, params, lr=0.01)
    f = gc.compile(loss, updates=updates, opt="O2")
    return gc.Graph([loss], updates), f.graph


@functools.lru_cache(maxsize=None)
def texts():
    step, fused = training_step()
    return {"step": str(step), "O2": str(fused)}


def test_the_o2_step_prints_parses_and_prints_back_identically_in_its_order():
    step, fused = training_step()
    assert any(n.op == "fused" for n in fused.nodes) and fused.updates
    for graph in (step, fused):
        text = str(graph)
        parsed = ir.parse(text)
        assert str(parsed) == text
        assert [n.op for n in parsed.nodes] == [n.op for n in graph.nodes]  # the schedule
        parsed.lint()


# --- mutations of the printed text ---------------------------------------------------

_TOKEN = re.compile(r"%\w+|-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|\w+|[()\[\],=:{}#'\"]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_TYPE = re.compile(r"\b(f32|f64|i32|i64|bool)\[([^\]]*)\]")
_JUNK = "()[]{},=:%#'\"\\ \t\n-+.eE019az_é\x00\x85"
WORDS = sorted(ops.OPS) + ["input", "param", "const", "return", "update", "value", "fill",
                           "axes", "keepdims", "kind", "True", "None", "nan", "-inf", "f16"]

numbers = st.one_of(st.integers(-2**70, 2**70).map(str), st.integers(0, 40).map(str),
                    st.floats(allow_nan=True).map(repr), st.sampled_from(["1e400", "-0.0", "1."]))
dims = st.lists(st.one_of(st.integers(0, 9), st.integers(0, 2**66), st.sampled_from(
    ["batch", "n", "-1", "b c", ""])), max_size=4).map(lambda ds: ",".join(map(str, ds)))
junk = st.text(alphabet=_JUNK, min_size=1, max_size=12)


def _replace_match(data, pattern, text, replacement):
    """`text` with one match of `pattern` (drawn) replaced by replacement(match)."""
    found = list(pattern.finditer(text))
    if not found:
        return text
    m = data.draw(st.sampled_from(found))
    return text[:m.start()] + replacement(m) + text[m.end():]


def _lines(data, text, change):
    lines = text.split("\n")
    i = data.draw(st.integers(0, len(lines) - 1))
    j = data.draw(st.integers(0, len(lines) - 1))
    return "\n".join(change(lines, i, j))


MUTATIONS = {
    "delete": lambda data, text: _lines(data, text, lambda ls, i, j: ls[:i] + ls[i + 1:]),
    "duplicate": lambda data, text: _lines(data, text, lambda ls, i, j: ls[:j] + [ls[i]] + ls[j:]),
    "swap": lambda data, text: _lines(data, text, lambda ls, i, j: [
        ls[j] if k == i else ls[i] if k == j else line for k, line in enumerate(ls)]),
    "token": lambda data, text: _replace_match(data, _TOKEN, text, lambda m: data.draw(
        st.one_of(st.sampled_from(_TOKEN.findall(text)), st.sampled_from(WORDS), numbers,
                  junk, st.just("")))),
    "number": lambda data, text: _replace_match(data, _NUMBER, text, lambda m: data.draw(numbers)),
    "shape": lambda data, text: _replace_match(data, _TYPE, text,
                                               lambda m: f"{m.group(1)}[{data.draw(dims)}]"),
    "dtype": lambda data, text: _replace_match(data, _TYPE, text, lambda m: data.draw(
        st.sampled_from(sorted(SHORT_TO_DTYPE) + ["f16", "q8", ""])) + f"[{m.group(2)}]"),
    "truncate": lambda data, text: text[:data.draw(st.integers(0, len(text)))],
    "junk": lambda data, text: (lambda k: text[:k] + data.draw(junk) + text[k:])(
        data.draw(st.integers(0, len(text)))),
}


def mutate(data, text: str) -> str:
    for _ in range(data.draw(st.integers(1, 3))):
        text = MUTATIONS[data.draw(st.sampled_from(sorted(MUTATIONS)))](data, text)
    return text


@pytest.fixture(scope="module")
def memory():
    tracemalloc.start()
    yield
    tracemalloc.stop()


@pytest.mark.parametrize("which", ["step", "O2"])
@settings(max_examples=60, deadline=4000,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_text_is_a_graphc_error_or_prints_back_identically(which, data, memory):
    text = mutate(data, texts()[which])
    tracemalloc.reset_peak()
    try:
        graph = ir.parse(text, max_value_bytes=VALUE_BYTES)
    except GraphcError:
        graph = None
    assert tracemalloc.get_traced_memory()[1] < PEAK_BYTES
    if graph is not None:
        printed = str(graph)
        assert str(ir.parse(printed)) == printed
        graph.lint()
