"""`graphc kernels FILE`: kernel sources and sm_90 compile stats from a text IR file, in a
process with neither a GPU nor the interpreter (code generation and AOT need neither)."""

import os
import subprocess
import sys

import graphc as gc

MODEL = gc.Graph([gc.nn.softmax(gc.relu(gc.input("x", ("batch", 7)) @ gc.param(
    "W", [[0.5] * 5] * 7)), axis=-1)])


def graphc_kernels(tmp_path, *args, blocked=()):
    """Run `graphc kernels`; `blocked` modules import as if not installed, in the command
    and in any child it starts (a sitecustomize on PYTHONPATH)."""
    path = tmp_path / "model.ir"
    path.write_text(str(MODEL))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if blocked:
        shim = tmp_path / "shim"
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(
            "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), env.get("PYTHONPATH")]))
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


def test_without_triton_it_says_what_to_install(tmp_path):
    run = graphc_kernels(tmp_path, "--dim", "batch=33", blocked=["triton"])
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert "needs triton, which is not installed" in run.stderr
    assert 'pip install -e ".[triton]"' in run.stderr
    # the sources alone need neither triton nor torch
    run = graphc_kernels(tmp_path, "--dim", "batch=33", "--no-compile",
                         blocked=["triton", "torch"])
    assert run.returncode == 0 and run.stdout.count("@triton.jit") >= 2, run.stderr
