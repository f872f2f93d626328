"""E: one Adam step of the LeNet-style CNN of examples/cnn_digits.py (1x8x8 -> conv 3x3
16 + relu + max pool 2 -> conv 3x3 32 + relu + max pool 2 -> dense 64 -> dense 10,
softmax cross-entropy), batch 256, float32.

Rows, timed side by side in one process with the same threads:
  graphc   gc.compile(loss, updates=gc.optim.adam(...)), backend numpy, O2
  torch    the same model in PyTorch eager (F.conv2d, F.max_pool2d, torch.optim.Adam),
           torch.set_num_threads(our BLAS threads)
Then where graphc's time goes: cProfile's time per step in each window op's run-time
function (backends/numpy/windows.py) and in NumPy's own methods.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys

import numpy as np

import graphc as gc
from graphc.backends.numpy import windows
from bench.common import blas_threads, print_table, time_side_by_side

BATCH = 256
LR = 1e-3
WINDOW_OPS = {fn.__name__ for fn in windows.HELPERS.values()}
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")


def graphc_step():
    sys.path.insert(0, EXAMPLES)  # the example's own imports (example_helpers)
    import cnn_digits

    model = cnn_digits.build(seed=0)
    step = gc.compile(model["loss"], updates=gc.optim.adam(model["loss"], model["params"],
                                                           lr=LR))
    return step, [p.value.copy() for p in model["params"]]


def torch_step(values, x, y):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(blas_threads())
    params = [torch.tensor(v, requires_grad=True) for v in values]
    optimizer = torch.optim.Adam(params, lr=LR)
    tx, ty = torch.from_numpy(x).reshape(BATCH, 1, 8, 8), torch.from_numpy(y)

    def step():
        c1w, c1b, c2w, c2b, d1w, d1b, d2w, d2b = params
        h = F.max_pool2d(F.relu(F.conv2d(tx, c1w, c1b, padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, c2w, c2b, padding=1)), 2)
        h = F.relu(h.reshape(BATCH, -1) @ d1w + d1b)
        loss = F.cross_entropy(h @ d2w + d2b, ty)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def where_time_goes(step, feeds, calls=20):
    """Seconds per step in each function the generated code calls, largest first."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        step(**feeds)
    profile.disable()
    stats = pstats.Stats(profile).stats
    rows = {}
    for (path, _, name), (_, _, tottime, cumtime, _) in stats.items():
        if path.endswith(os.path.join("numpy", "windows.py")) and name in WINDOW_OPS:
            rows[f"window op {name}"] = cumtime / calls
        elif name.startswith("<method") or name.startswith("<built-in"):
            rows[name] = rows.get(name, 0.0) + tottime / calls
    total = sum(v for (p, _, n), (_, _, _, v, _) in stats.items() if n == "__call__"
                and p.endswith("compile.py")) / calls
    return total, sorted(rows.items(), key=lambda kv: -kv[1])[:8]


def run(repeats: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 64)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    feeds = {"x": x, "y": y}
    step, values = graphc_step()
    step(**feeds)
    medians = time_side_by_side({"graphc": lambda: step(**feeds),
                                 "torch": torch_step(values, x, y)}, repeats)
    print_table("E: CNN Adam training step", medians, "graphc",
                f"batch {BATCH}, float32, {blas_threads()} threads; ratios < 1 mean graphc "
                "is faster than the row")
    print(f"  graphc: {step.stats['kernels']} kernels per step")
    total, rows = where_time_goes(step, feeds)
    print(f"  where graphc's step goes (cProfile, {total * 1e3:.2f} ms a step under it):")
    for name, seconds in rows:
        print(f"    {name:<44} {seconds * 1e3:7.3f} ms")
