"""`graphc kernels FILE`: kernel sources and sm_90 compile stats from a text IR file, in a
process with neither a GPU nor the interpreter (code generation and AOT need neither)."""

import os
import subprocess
import sys

import graphc as gc

MODEL = gc.Graph([gc.nn.softmax(gc.relu(gc.input("x", ("batch", 7)) @ gc.param(
    "W", [[0.5] * 5] * 7)), axis=-1)])


def graphc_kernels(tmp_path, *args):
    path = tmp_path / "model.ir"
    path.write_text(str(MODEL))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-m", "graphc.cli", "kernels", str(path), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_prints_each_kernel_with_its_sm90_stats(tmp_path):
    run = graphc_kernels(tmp_path, "--dim", "batch=33")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("@triton.jit") >= 2
    assert "registers, spills 0 B stored / 0 B loaded" in run.stdout
    assert "kernels compiled for sm_90" in run.stdout


def test_unbound_dims_are_named(tmp_path):
    run = graphc_kernels(tmp_path, "--no-compile")
    assert run.returncode == 2 and "--dim batch=64" in run.stderr
