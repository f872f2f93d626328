"""Asking for the triton backend where it cannot run gives a clear BackendUnavailable at
gc.compile, and the numpy backend keeps working in the same process. Each case runs in a
fresh interpreter, since whether triton can run is settled when the backend is imported."""

import os
import subprocess
import sys

SCRIPT = """
import sys
{setup}
import numpy as np, graphc as gc
x = gc.input("x", (3,))
try:
    gc.compile(x * 2, backend="triton")
except gc.errors.BackendUnavailable as e:
    print("UNAVAILABLE:", e)
print("numpy:", gc.compile(x * 2, backend="numpy")(x=np.ones(3, np.float32)).tolist())
"""


def run(setup="", interpret=False):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(setup=setup)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_no_gpu_and_no_interpreter():
    out = run()
    assert "UNAVAILABLE:" in out and "TRITON_INTERPRET=1" in out and "CUDA device" in out
    assert "numpy: [2.0, 2.0, 2.0]" in out


def test_triton_not_installed():
    out = run(setup="sys.modules['triton'] = None  # as if not installed", interpret=True)
    assert "UNAVAILABLE:" in out and "pip install graphc[triton]" in out
    assert "numpy: [2.0, 2.0, 2.0]" in out


def test_torch_not_installed():
    out = run(setup="sys.modules['torch'] = None", interpret=True)
    assert "UNAVAILABLE:" in out and "pip install graphc[triton]" in out
    assert "numpy: [2.0, 2.0, 2.0]" in out
