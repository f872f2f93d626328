"""Save and load (issue 16): gc.save/gc.load of param values and optimizer state,
f.save/gc.load_function of a whole compiled function, and pickling of nodes, graphs and
functions. A resumed training run (MLP + Adam, saved after some steps, loaded in a NEW
process, continued) must give bit-identical params to the uninterrupted run."""

import json
import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from graphc import artifacts
from graphc.backends import ccompile

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The model, built the same way in this process and in the fresh one.
MODEL = """
import numpy as np, graphc as gc

def model(backend):
    rng = np.random.default_rng(7)
    x = gc.input("x", ("batch", 5))
    y = gc.input("y", ("batch",), dtype="int64")
    logits, params = gc.nn.mlp(x, [5, 9, 3], rng=rng)
    loss = gc.nn.softmax_cross_entropy(logits, y)
    step = gc.compile(loss, updates=gc.optim.adam(loss, params, lr=0.03), backend=backend)
    return step

def batches(n):
    rng = np.random.default_rng(11)
    for k in range(n):
        size = 7 if k % 3 else 4   # two batch sizes: two executables
        yield rng.standard_normal((size, 5)).astype(np.float32), rng.integers(0, 3, size)
"""

# The fresh process: resume from a checkpoint (gc.load) and from a saved function
# (gc.load_function), run the last steps, save both results.
RESUME = MODEL + """
import json, sys
from graphc.backends import ccompile
backend, checkpoint, saved, out = sys.argv[1:5]
ccompile.available()   # the compiler probe, built in this fresh cache before we count
built, build_all = [], ccompile._build_all
ccompile._build_all = lambda command, units, *rest: (
    built.extend(u.file_name for u in units), build_all(command, units, *rest))
loaded = gc.load_function(saved)
for X, Y in list(batches(10))[6:]:
    loaded(x=X, y=Y)
built_by_loaded = list(built)
step = model(backend)          # built from scratch: finds the same libraries cached
gc.load(checkpoint, step.params)
for X, Y in list(batches(10))[6:]:
    step(x=X, y=Y)
gc.save(out + "/resumed.npz", step.params)
gc.save(out + "/loaded.npz", loaded.params)
print(json.dumps({"loaded": built_by_loaded, "scratch": built[len(built_by_loaded):]}))
"""


def _model():
    namespace = {}
    exec(MODEL, namespace)
    return namespace["model"], namespace["batches"]


@pytest.mark.parametrize("backend", ["numpy", "reference"])
def test_a_run_resumed_in_a_new_process_is_bit_identical(backend, tmp_path):
    model, batches = _model()
    whole = model(backend)
    for X, Y in batches(10):
        whole(x=X, y=Y)
    first = model(backend)
    for X, Y in list(batches(10))[:6]:
        first(x=X, y=Y)
    gc.save(tmp_path / "step6.npz", first.params)
    first.save(tmp_path / "saved")
    saved_libraries = sorted(json.loads((tmp_path / "saved" / "function.json").read_text())
                             ["libraries"])
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "fresh-cache"))
    run = subprocess.run([sys.executable, "-c", RESUME, backend, str(tmp_path / "step6.npz"),
                          str(tmp_path / "saved"), str(tmp_path)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("resumed.npz", "loaded.npz"):
        with np.load(tmp_path / name) as data:
            assert sorted(data.files) == sorted(p.name for p in whole.params)
            for p in whole.params:
                assert data[p.name].dtype == p.value.dtype
                assert data[p.name].tobytes() == p.value.tobytes(), (name, p.name)
    compiled = json.loads(run.stdout)
    # the saved function compiled no C: its libraries came from the save; the model built
    # from scratch then found them cached (the same keys) and compiled nothing either
    assert compiled == {"loaded": [], "scratch": []}
    if backend == "numpy" and ccompile.available():
        assert saved_libraries, "the numpy step has C kernels, saved with it"


def test_load_checks_everything_before_it_changes_a_param(tmp_path):
    a = gc.param("a", np.arange(6.0).reshape(2, 3))
    b = gc.param("b", np.ones(4))
    gc.save(tmp_path / "ab.npz", [a, b])
    a2 = gc.param("a", np.zeros((2, 3)))
    b2 = gc.param("b", np.zeros(5))
    with pytest.raises(gc.GraphcError, match=r"param 'b' has shape \(5,\).*holds shape \(4,\)"):
        gc.load(tmp_path / "ab.npz", [a2, b2])
    assert not a2.value.any()  # a fitted, but nothing was loaded
    i2 = gc.param("b", np.zeros(4), dtype="float64")
    with pytest.raises(gc.GraphcError, match="param 'b' .*dtype float64.*dtype float32"):
        gc.load(tmp_path / "ab.npz", [a2, i2])
    with pytest.raises(gc.GraphcError, match="holds no value for param 'c'"):
        gc.load(tmp_path / "ab.npz", [a2, b, gc.param("c", 1.0)])
    with pytest.raises(gc.GraphcError, match="values for params not given: b"):
        gc.load(tmp_path / "ab.npz", [a2])
    gc.load(tmp_path / "ab.npz", [a2, gc.param("b", np.zeros(4))])
    np.testing.assert_array_equal(a2.value, a.value)
    a2.value[0, 0] = 99  # a copy of its own
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ab.npz").read_bytes()[:100])
    with pytest.raises(gc.GraphcError, match="not a file of param values"):
        gc.load(tmp_path / "cut.npz", [a2, b2])
    with pytest.raises(gc.UsageError, match="two different params are named 'a'"):
        gc.save(tmp_path / "x.npz", [a, a2])


def _saved_step(tmp_path, backend="numpy"):
    model, batches = _model()
    step = model(backend)
    for X, Y in batches(2):
        step(x=X, y=Y)
    step.save(tmp_path / "saved")
    return step, tmp_path / "saved"


def test_a_saved_function_runs_its_optimized_graph_as_written(tmp_path):
    step, folder = _saved_step(tmp_path)
    loaded = gc.load_function(folder)
    assert str(loaded.graph) == str(step.graph)  # read back, not optimized again
    assert loaded.options == step.options and loaded.backend_name == "numpy"
    assert [n.name for n in loaded.inputs] == ["x", "y"]
    X, Y = next(_model()[1](1))
    assert loaded(X, Y) == step(X, Y)
    clone = pickle.loads(pickle.dumps(loaded))  # a loaded function's graph is the optimized
    assert clone._graph is not None and str(clone.graph) == str(step.graph)


def test_a_saved_signature_keeps_inputs_the_outputs_do_not_use(tmp_path):
    x, unused = gc.input("x", ("n",)), gc.input("unused", (3,), dtype="int32")
    f = gc.compile(x * 2.0, inputs=[x, unused], backend="reference")
    f.save(tmp_path / "f")  # never called: nothing compiled, nothing to copy
    loaded = gc.load_function(tmp_path / "f")
    assert [(n.name, n.type) for n in loaded.inputs] == [("x", x.type), ("unused", unused.type)]
    np.testing.assert_array_equal(loaded(np.ones(2), np.zeros(3, np.int32)), [2.0, 2.0])
    with pytest.raises(gc.FeedError, match="missing input 'unused'"):
        loaded(x=np.ones(2))


@pytest.mark.parametrize("damage", ["version", "graph", "params", "library", "missing"])
def test_a_damaged_or_foreign_saved_folder_is_a_clear_error(tmp_path, damage):
    step, folder = _saved_step(tmp_path)
    manifest = json.loads((folder / "function.json").read_text())
    if damage == "version":
        manifest["version"] = 99
        (folder / "function.json").write_text(json.dumps(manifest))
        match = "format version 99; this graphc reads version 1"
    elif damage == "missing":
        (folder / "function.json").unlink()
        match = "holds no saved function"
    else:
        name = {"graph": "graph.ir", "params": "params.npz"}.get(damage) or next(
            iter(manifest["libraries"]), None)
        if name is None:
            pytest.skip("no C compiler: no library saved")
        path = folder / name
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])  # truncated
        match = f"{name} is damaged or truncated"
    with pytest.raises(gc.GraphcError, match=match):
        gc.load_function(folder)


def test_a_library_that_does_not_match_its_digest_is_never_installed(tmp_path):
    library = tmp_path / "kernels_0123456789abcdef01234567.so"
    library.write_bytes(b"not a library")
    with pytest.raises(ccompile.CompileFailed, match="damaged"):
        ccompile.install(library.name, str(library), "0" * 64)


def test_nodes_graphs_and_functions_pickle(tmp_path):
    x = gc.input("x", ("batch", 3))
    W = gc.param("W", np.arange(6.0).reshape(3, 2))
    with gc.scope("layer"):
        y = gc.relu(x @ W + 1.0)
    loss = y.sum()
    copy = pickle.loads(pickle.dumps(loss))
    assert str(gc.Graph([copy])) == str(gc.Graph([loss]))
    deep = x
    for _ in range(5000):  # deeper than pickle's recursion: a Graph saves its nodes in order
        deep = deep * 1.0
    assert len(pickle.loads(pickle.dumps(gc.Graph([deep]))).nodes) == len(gc.Graph([deep]).nodes)
    step = gc.compile(loss, updates={W: W - 0.1 * gc.grad(loss, [W])[0]}, backend="numpy")
    X = np.ones((4, 3), np.float32)
    clone = pickle.loads(pickle.dumps(step))
    assert clone._graph is None  # optimized lazily, at its first call
    assert clone(x=X) == step(x=X)
    (W2,) = clone.params
    np.testing.assert_array_equal(W2.value, W.value)  # each stepped once, from one value
    assert W2 is not W


def test_a_function_keeps_its_most_recent_executables(monkeypatch):
    x = gc.input("x", ("batch", 2))
    f = gc.compile(gc.relu(x) * 2.0, backend="numpy", max_executables=2)
    built = []
    backend_build = f._backend.build
    monkeypatch.setattr(f, "_backend", type(f._backend)(
        f._backend.name, f._backend.options,
        lambda *a: built.append(a[1]["batch"]) or backend_build(*a)))
    for batch in (1, 2, 1, 3, 1, 2):
        np.testing.assert_array_equal(f(x=np.ones((batch, 2))), np.full((batch, 2), 2.0))
    # 1 and 2 built; 1 reused (most recent); 3 evicts 2; 1 reused; 2 built again, evicting 3
    assert built == [1, 2, 3, 2]
    assert len(f._executables) == 2
    with pytest.raises(gc.UsageError, match="max_executables"):
        gc.compile(x, max_executables=0)


def test_save_writes_its_manifest_last(tmp_path, monkeypatch):
    step, folder = _saved_step(tmp_path)
    order = []
    real = artifacts._write_bytes
    monkeypatch.setattr(artifacts, "_write_bytes",
                        lambda path, data: order.append(os.path.basename(path)) or real(path, data))
    step.save(tmp_path / "again")
    assert order[-1] == "function.json" and "graph.ir" in order


def test_every_backend_saves_loads_and_pickles_a_training_step(backend, tmp_path):
    x = gc.input("x", ("n", 3))
    W = gc.param("W", np.linspace(-1, 1, 6).reshape(3, 2))
    loss = gc.relu(x @ W).sum()
    step = backend.compile(loss, updates={W: W - 0.1 * gc.grad(loss, [W])[0]})
    X = np.linspace(0, 1, 15, dtype=np.float32).reshape(5, 3)
    step(x=X)
    step.save(tmp_path / "step")
    loaded, clone = gc.load_function(tmp_path / "step"), pickle.loads(pickle.dumps(step))
    assert loaded.backend_name == clone.backend_name == backend.name
    results = [f(x=X) for f in (step, loaded, clone)]
    assert results[0] == results[1] == results[2]
    values = [f.params[0].value.tobytes() for f in (step, loaded, clone)]
    assert values[0] == values[1] == values[2]
