"""A fresh process's first call of a saved function, against a cold compile.

`python -m bench save_load` trains nothing: it builds the MLP 784-512-512-10 Adam step
(batch 256, float32, numpy backend, O2), calls it once and saves it (f.save), then times,
each in a fresh Python process with an empty C compile cache of its own:

  cold compile   build the graph, gc.compile (optimize) and the first call (the numpy
                 build: Python code and the C compiler)
  warm compile   the same with the C libraries already cached (a second run on a machine)
  saved          gc.load_function(dir) (parse the IR, check and install the saved
                 libraries) and the first call (the Python code, no optimizing, no C)

Each row is the median (and minimum) of `min(repeats, 5)` processes; the interpreter's
start, the imports and the C compiler's probe (run before the clock starts) are left
out of every row alike. "setup" takes the run itself out: the first call's time less a
second call's (on a shared machine the run's own time swings the most). The target: the saved function's first call well under the cold
compile's, and under the warm compile's (it skips the optimizer too).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

# The child: `mode` is cold | warm | saved; prints the seconds its row measures.
CHILD = """
import json, sys, time
import numpy as np, graphc as gc
from graphc.backends import ccompile
mode, folder = sys.argv[1:3]
ccompile.available()   # the compiler's probe: every row's cache holds it before the clock
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 784)).astype(np.float32)
Y = rng.integers(0, 10, 256)

def step():
    x = gc.input("x", ("batch", 784))
    y = gc.input("y", ("batch",), dtype="int64")
    logits, params = gc.nn.mlp(x, [784, 512, 512, 10])
    loss = gc.nn.softmax_cross_entropy(logits, y)
    return gc.compile(loss, updates=gc.optim.adam(loss, params, lr=1e-3), backend="numpy")

start = time.perf_counter()
f = gc.load_function(folder) if mode == "saved" else step()
f(x=X, y=Y)
seconds = time.perf_counter() - start
again = time.perf_counter()
f(x=X, y=Y)   # a call once built: the first call's own run, to take out of it
run = time.perf_counter() - again
if mode == "save":
    f.save(folder)
print(json.dumps({"seconds": seconds, "setup": seconds - run,
                  "c_kernels": sum(bool(k.extra.get("c_source")) for k in f.kernels)}))
"""

ROWS = ("cold compile", "warm compile", "saved")


def _child(mode: str, folder: str, cache: str) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    run = subprocess.run([sys.executable, "-c", CHILD, mode, folder], env=env,
                         capture_output=True, text=True, timeout=600)
    if run.returncode:
        raise RuntimeError(f"the {mode} process failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout)


def run(repeats: int) -> None:
    processes = max(1, min(repeats, 5))
    with tempfile.TemporaryDirectory() as root:
        saved = os.path.join(root, "saved")
        _child("save", saved, os.path.join(root, "cache-save"))
        times = {row: [] for row in ROWS}
        setups = {row: [] for row in ROWS}
        kernels = {}
        for k in range(processes):  # the rows take turns: a slow phase hits them alike
            warm_cache = os.path.join(root, f"cache-warm-{k}")
            _child("cold", saved, warm_cache)  # fills warm_cache for the warm row
            for row, mode, cache in (("cold compile", "cold", f"cache-cold-{k}"),
                                     ("warm compile", "cold", warm_cache),
                                     ("saved", "saved", f"cache-saved-{k}")):
                result = _child(mode, saved, os.path.join(root, cache))
                times[row].append(result["seconds"])
                setups[row].append(result["setup"])
                kernels[row] = result["c_kernels"]
    print(f"MLP 784-512-512-10 Adam step, batch 256, numpy backend; {processes} fresh "
          f"processes a row, load average {os.getloadavg()[0]:.2f}")
    print("first call: from nothing to the first result; setup: the first call less the")
    print("time of a call once built (what compiling or loading adds to the first run)")
    print(f"{'row':<14} {'first call, median':>18} {'min':>8} {'setup, median':>14} "
          f"{'min':>8} {'C kernels':>9}")
    for row in ROWS:
        print(f"{row:<14} {statistics.median(times[row]):>17.3f}s {min(times[row]):>7.3f}s "
              f"{statistics.median(setups[row]):>13.3f}s {min(setups[row]):>7.3f}s "
              f"{kernels[row]:>9}")
    for what, rows in (("first call", times), ("setup", setups)):
        loaded = statistics.median(rows["saved"])
        cold, warm = (statistics.median(rows[r]) for r in ("cold compile", "warm compile"))
        print(f"{what}: saved / cold compile {loaded / cold:.2f}, saved / warm compile "
              f"{loaded / warm:.2f} (target: both below 1: "
              f"{'met' if loaded < min(cold, warm) else 'NOT met'})")
