"""Calling a compiled Function: its signature (inputs=), calls from several threads, and
updates that commit all or nothing, whether a signal comes mid-step or a param's array
cannot be written."""

import linecache
import signal
import sys
import threading
import time

import numpy as np
import pytest

import graphc as gc
from graphc.errors import FeedError, GraphcError


# --- inputs= is the call's signature ---------------------------------------------------

def test_a_listed_input_the_outputs_do_not_use_is_accepted_by_name_and_position(backend):
    x, y = gc.input("x", ("n",)), gc.input("y", ("n", 2), dtype="int64")
    f = backend.compile(x * 2, inputs=[x, y])
    X, Y = np.arange(3, dtype=np.float32), np.zeros((3, 2), np.int64)
    np.testing.assert_array_equal(f(x=X, y=Y), 2 * X)
    np.testing.assert_array_equal(f(X, Y), 2 * X)
    np.testing.assert_array_equal(f(X, y=Y), 2 * X)
    f = backend.compile(x * 2, inputs=[y, x])  # positions follow the list
    np.testing.assert_array_equal(f(Y, X), 2 * X)


def test_a_listed_input_is_required_and_checked_even_when_unused(backend):
    x, y = gc.input("x", ("n",)), gc.input("y", ("n",), dtype="int64")
    f = backend.compile(x * 2, inputs=[x, y])
    X = np.arange(3, dtype=np.float32)
    with pytest.raises(FeedError, match="missing input 'y'"):
        f(x=X)
    with pytest.raises(FeedError, match="missing input 'y'"):
        f(X)
    with pytest.raises(FeedError, match="input 'y' expects int64; casting float64"):
        f(X, np.zeros(3))
    with pytest.raises(FeedError, match="symbolic dim 'n' is 3 in input 'x' but 4"):
        f(X, np.zeros(4, np.int64))


def test_inputs_must_list_input_nodes():
    x = gc.input("x", (3,))
    W = gc.param("W", np.zeros(3))
    with pytest.raises(FeedError, match="inputs= lists the input nodes"):
        gc.compile(x * W, inputs=[x, W])
    with pytest.raises(FeedError, match="two different inputs are named 'x'"):
        gc.compile(x * 2, inputs=[x, gc.input("x", (3,))])


def _boundaries(frame) -> bool:
    """The frames whose lines are a step's kernel boundaries and its commit:
    Function.__call__, where every backend commits, and the numpy backend's generated
    function, whose kernels write params themselves. (The reference's and triton's
    executables write no param: an interrupt in them comes before the commit.)"""
    code = frame.f_code
    return code is gc.Function.__call__.__code__ or code.co_filename.startswith("<graphc:")


# --- threads ---------------------------------------------------------------------------

def _yield_at_each_boundary(frame, event, arg):
    """A trace function that lets another thread run at each kernel boundary (see
    _boundaries), so that two calls interleave wherever they can."""
    if event == "call" and _boundaries(frame):
        return _yield_at_each_boundary
    if event == "line":
        time.sleep(0)
        return _yield_at_each_boundary
    return None


def _in_threads(count, work):
    errors = []

    def run(i):
        try:
            work(i)
        except BaseException as e:  # noqa: BLE001  (reported by the test, not lost)
            errors.append(e)

    threading.settrace(_yield_at_each_boundary)  # for the threads started from here
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
    finally:
        threading.settrace(None)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_threads_calling_one_function_each_get_their_own_results(backend):
    x = gc.input("x", (16, 8))
    W = gc.param("W", np.random.default_rng(0).normal(size=(8, 8)))
    f = backend.compile([gc.tanh(x @ W) * 2 + gc.sum(x), gc.exp(-x) + 1])
    inputs = [np.full((16, 8), i / 10, np.float32) for i in range(4)]
    expected = [[np.array(v) for v in f(x=X)] for X in inputs]
    wrong = []

    def work(i):
        for _ in range(5):
            got = f(x=inputs[i])
            wrong.extend(i for g, e in zip(got, expected[i]) if not np.array_equal(g, e))

    _in_threads(4, work)
    assert not wrong


def test_threads_training_one_step_lose_no_update(backend):
    x = gc.input("x", (8,))
    count = gc.param("count", 0, dtype="int64")
    total = gc.param("total", np.zeros(8))
    step = backend.compile(gc.sum(total), updates={count: count + 1, total: total + x})
    _in_threads(4, lambda i: [step(x=np.ones(8)) for _ in range(5)])
    assert count.value == 20
    np.testing.assert_array_equal(total.value, np.full(8, 20.0))


# --- all or nothing ---------------------------------------------------------------------

def _momentum_step(backend):
    rng = np.random.default_rng(1)
    x = gc.input("x", (3, 4))
    y = gc.input("y", (3,), dtype="int64")
    W, b = gc.param("W", rng.normal(size=(4, 3))), gc.param("b", rng.normal(size=3))
    loss = gc.nn.softmax_cross_entropy(x @ W + b, y)
    updates = gc.optim.sgd(loss, [W, b], lr=0.1, momentum=0.9)
    step = backend.compile(loss, updates=updates)
    feeds = dict(x=rng.normal(size=(3, 4)), y=np.array([0, 2, 1]))
    step(**feeds)  # once, so that the velocities are not zero: an update shows in each
    return step, list(updates), feeds


def _state(params):
    return [p.value.copy() for p in params]


def _restore(params, state):
    for p, value in zip(params, state):
        p.value = value


def _is_all_old_or_all_new(params, old, new) -> bool:
    now = _state(params)
    return (all(np.array_equal(a, b) for a, b in zip(now, old))
            or all(np.array_equal(a, b) for a, b in zip(now, new)))


class _InterruptAt:
    """A trace function that sends SIGINT to this process at the `at`-th line executed in
    a boundary frame (or only counts the lines, when `at` is None, and keeps their text)."""

    def __init__(self, at=None):
        self.at, self.lines, self.texts = at, 0, []

    def __call__(self, frame, event, arg):
        if event == "call":
            return self._line if _boundaries(frame) else None
        return None

    def _line(self, frame, event, arg):
        if event == "line":
            if self.lines == self.at:
                signal.raise_signal(signal.SIGINT)
            elif self.at is None:
                self.texts.append(linecache.getline(frame.f_code.co_filename, frame.f_lineno))
            self.lines += 1
        return self._line


def _traced(trace, call):
    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(None)


def test_an_interrupt_at_any_kernel_boundary_leaves_the_step_all_old_or_all_new(backend):
    step, params, feeds = _momentum_step(backend)
    old = _state(params)
    counter = _InterruptAt()
    _traced(counter, lambda: step(**feeds))
    new = _state(params)
    assert counter.lines > 10 and not any(np.array_equal(a, b) for a, b in zip(old, new))
    handler = signal.getsignal(signal.SIGINT)
    interrupted = 0
    for at in range(counter.lines):
        _restore(params, old)
        try:
            _traced(_InterruptAt(at), lambda: step(**feeds))
        except KeyboardInterrupt:
            interrupted += 1
        assert _is_all_old_or_all_new(params, old, new), f"interrupted at line {at}"
        assert signal.getsignal(signal.SIGINT) is handler  # put back as it was
    assert interrupted == counter.lines  # no interrupt is lost, however late it came


def test_a_signal_held_back_by_the_commit_is_handled_after_the_call_lets_go(backend):
    step, params, feeds = _momentum_step(backend)
    counter = _InterruptAt()
    _traced(counter, lambda: step(**feeds))
    committing = [at for at, text in enumerate(counter.texts)
                  if "np.copyto(param.value, value)" in text]  # Function.__call__ commits
    finished = []

    def call_from_another_thread(signum, frame):  # a handler that uses the function
        thread = threading.Thread(target=lambda: finished.append(step(**feeds)))
        thread.start()
        thread.join(timeout=5)  # had the call kept its lock, this would wait in vain

    before = signal.signal(signal.SIGINT, call_from_another_thread)
    try:
        for count, at in enumerate(committing, 1):
            _traced(_InterruptAt(at), lambda: step(**feeds))
            assert len(finished) == count, f"interrupted at {counter.texts[at].strip()!r}"
    finally:
        signal.signal(signal.SIGINT, before)
    assert committing


def test_a_param_array_made_read_only_in_place_is_refused_before_anything_is_written(
        backend):
    step, params, feeds = _momentum_step(backend)
    old = _state(params)
    k, b = next((k, p) for k, p in enumerate(params) if p.name == "b")  # committed last
    b.value.flags.writeable = False  # the array the param holds, not an assigned one
    with pytest.raises(GraphcError, match="param 'b' is updated in place by this function, "
                                          "but its value array was made read-only"):
        step(**feeds)
    assert all(np.array_equal(a, b) for a, b in zip(_state(params), old))
    b.value.flags.writeable = True
    step(**feeds)
    assert not np.array_equal(b.value, old[k])


def test_a_param_array_changed_in_place_is_refused_naming_the_param(backend):
    x = gc.input("x", (2, 3))
    b = gc.param("b", np.zeros(3))
    f = backend.compile(x + b)
    b.value.dtype = np.int32  # same size, another dtype: C would read ints as floats
    with pytest.raises(GraphcError, match=r"param 'b' is f32\[3\], but its value array was "
                                          r"changed in place to int32\[3\]"):
        f(x=np.zeros((2, 3)))
