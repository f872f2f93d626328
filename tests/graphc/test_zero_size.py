"""Zero-size dims on every backend, against the reference interpreter: every op's example
(test_op_table.py) with x of shapes (2, 0) and (0, 7), and the cases that once crashed
the triton backend (a sum, mean, max or softmax cross-entropy over a batch of 0 rows; a
concat with an empty operand; the zero padding of a slice's gradient). The sum of
nothing is 0, its mean nan, and a max over an empty axis raises the reference's error.

Each backend runs the cases in a child process: a kernel that reads out of bounds
kills its process, and it must fail this test, not the test run. The child writes what
each case returned (or raised) to a pickle; this process compares."""

import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from tests.graphc.test_op_table import EXAMPLES, REFUSED, assert_agree, example

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _batch_cases():
    """name -> (node, feeds) of the cases that once crashed the triton backend."""
    x, labels = gc.input("x", ("batch", 5)), gc.input("labels", ("batch",), "int64")
    z, t = gc.input("z", (3, 5)), gc.input("t", (2, 3, 0))
    empty = {"x": np.zeros((0, 5), np.float32), "labels": np.zeros(0, np.int64)}
    some = {"x": np.arange(15, dtype=np.float32).reshape(3, 5)}
    gap = x[:, 2:2]                                         # (batch, 0)
    out = {
        "sum over 0 rows": (x.sum(axis=0), empty),
        "mean over 0 rows": (x.mean(axis=0) + x.mean(), empty),
        "max over 0 rows": (x.max(axis=0), empty),
        "max of 0 rows, each": (x.max(axis=1), empty),
        "softmax cross-entropy over 0 rows": (gc.nn.softmax_cross_entropy(x, labels), empty),
        "its gradient": (gc.grad(gc.nn.softmax_cross_entropy(x, labels), [x])[0], empty),
        "a sum and a mean over two axes, one empty": (t.sum(axis=(1, 2)) + t.mean(axis=(1, 2)),
                                                      {"t": np.zeros((2, 3, 0), np.float32)}),
        "concat with an empty operand": (gc.concat([gap, x, gap * 2], axis=1) + 1, some),
        "concat of empty rows": (gc.concat([z[:0], z, z[3:]], axis=0) * 2, {"z": some["x"]}),
        "the padding of an empty slice's gradient": (gc.grad(gc.sum(gap * 3), [x])[0], some),
    }
    return {name: (node, {n.name: feeds[n.name] for n in gc.Graph(node).inputs})
            for name, (node, feeds) in out.items()}


def cases() -> dict:
    out = _batch_cases()
    for op in sorted(EXAMPLES):
        for rows, cols in ((2, 0), (0, 7)):
            out[f"{op} on ({rows}, {cols})"] = example(op, rows, cols)
    return out


def outcome(compile, node, feeds):
    """("ok", result) or ("raised", the error's type name, its message)."""
    try:
        return ("ok", compile(node)(**feeds))
    except gc.GraphcError as e:
        return ("raised", type(e).__name__, str(e))


def child(backend: str, opt: str, path: str):
    """Run every case on one backend; write {name: outcome} to `path`. Each case's name
    goes to stderr first, so a crash names the case that caused it."""
    results = {}
    for name, (node, feeds) in cases().items():
        print(name, file=sys.stderr, flush=True)
        results[name] = outcome(lambda n: gc.compile(n, backend=backend, opt=opt), node, feeds)
    with open(path, "wb") as f:
        pickle.dump(results, f)


def _without_location(message: str) -> str:
    # the user's line is checked on its own; a backend may add its own place after it
    return re.sub(r" \(made at [^)]*\)", "", message)


def test_zero_size_dims_on_every_backend(backend, tmp_path):
    path = str(tmp_path / "results.pickle")
    script = (f"from tests.graphc.test_zero_size import child; "
              f"child({backend.name!r}, {backend.opt!r}, {path!r})")
    # (the child inherits TRITON_INTERPRET, which conftest.py sets where there is no GPU)
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    last = run.stderr.strip().splitlines()[-1:] or ["(none)"]
    assert run.returncode == 0, (f"{backend} died (exit {run.returncode}) in case "
                                 f"{last[0]!r}:\n{run.stderr[-3000:]}")
    with open(path, "rb") as f:
        results = pickle.load(f)
    for name, (node, feeds) in cases().items():
        want = outcome(lambda n: gc.compile(n, backend="reference", opt="O0"), node, feeds)
        got = results[name]
        if got[0] == "raised" and name.split(" on ")[0] in REFUSED.get(backend.name, ()):
            assert "cannot generate" in got[2], got  # an op this backend refuses
            continue
        assert got[0] == want[0], f"{name}: {backend} {got[0]}, the reference {want}"
        if want[0] == "ok":
            assert_agree(got[1], want[1], name)
        else:
            assert got[1] == want[1], f"{name}: {got}"
            assert _without_location(got[2]) == _without_location(want[2]), name
            assert "test_zero_size.py:" in got[2] or "test_op_table.py:" in got[2], got[2]


def test_the_cases_cover_each_outcome():
    """The sum of nothing is 0, its mean nan, and a max over nothing raises."""
    ref = {name: outcome(lambda n: gc.compile(n, backend="reference", opt="O0"), *case)
           for name, case in _batch_cases().items()}
    np.testing.assert_array_equal(ref["sum over 0 rows"][1], np.zeros(5))
    assert np.isnan(ref["mean over 0 rows"][1]).all()
    assert ref["max over 0 rows"][0] == "raised" and "zero-size array" in ref["max over 0 rows"][2]
    assert ref["max of 0 rows, each"][1].shape == (0,)
    assert np.isnan(ref["softmax cross-entropy over 0 rows"][1])
    assert ref["concat with an empty operand"][1].shape == (3, 5)

