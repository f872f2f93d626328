"""The benchmark runner: `python -m bench [NAME ...] [--repeats N]` (or `graphc bench`).

BENCHMARKS is the list of benchmarks, one row each: name -> (module, what it measures).
A benchmark module has `run(repeats: int) -> None` and prints its own tables.
They need pyproject.toml's bench extra (NEEDS), checked before anything runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

BENCHMARKS = {
    "training_step": ("bench.training_step",
                      "A/B: MLP 784-512-512-10 SGD step and forward vs NumPy, torch, matmuls"),
    "pointwise": ("bench.pointwise_expr",
                  "C: sigmoid(tanh(x*a+b) * exp(-x*x)) + relu(x), 4M values, value and grad"),
    "compile_time": ("bench.compile_time",
                     "O2 pipeline time on MLP training graphs of 2..200 layers (linear scaling)"),
    "first_call": ("bench.first_call",
                   "first call of 2k- and 10k-op elementwise chains, C compiler cache empty"),
    "batch_sizes": ("bench.batch_sizes",
                    "first call at a new batch size after the first build; an epoch with a "
                    "ragged last batch (one build for every batch size)"),
    "save_load": ("bench.save_load",
                  "a fresh process's first call of a saved function vs a cold compile"),
    "gpu_traffic": ("bench.gpu_traffic",
                    "D: modelled GPU memory traffic of the MLP step, fused kernels vs one per op"),
    "data_parallel": ("bench.data_parallel",
                      "E: MLP SGD step on 1 and 2 gloo workers, batch 256 each, overlap, vs DDP"),
    "large_graphs": ("bench.large_graphs",
                     "O2 and first-call time and peak memory of 10k..300k-node chains and "
                     "fan-outs (growth exponents)"),
    "cnn_step": ("bench.cnn_step",
                 "E: LeNet-style CNN Adam step at batch 256 vs torch eager on the CPU"),
    "gpu": ("bench.gpu",
            "F: on a CUDA GPU, the triton tests, then the MLP step at batch 256 and 8192 "
            "vs torch.compile (inductor); without one, says so"),
    "triton_host": ("bench.triton_host",
                    "G: host time of a triton MLP step with the kernel launches stubbed out "
                    "(CPU, no GPU)"),
}

# The bench extra: threadpoolctl reads and limits the BLAS's threads, torch is a peer row.
NEEDS = ("threadpoolctl", "torch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def add_arguments(parser):
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per row")
    parser.add_argument("--quick", action="store_true",
                        help="few timed runs per row (5), for a check rather than a measurement")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS (and torch) threads; default: the BLAS's own choice")
    parser.add_argument("--keep-blas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE if set (by default "
                             "the run re-executes itself without them, as on a user's machine)")


def run(args) -> int:
    from bench.common import BLAS_OVERRIDES

    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; benchmarks are {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        print(f"the benchmarks need {', '.join(NEEDS)}; not installed: {', '.join(missing)}. "
              'Install graphc\'s bench extra: pip install -e ".[bench]"', file=sys.stderr)
        return 2
    if not args.keep_blas_env and any(k in os.environ for k in BLAS_OVERRIDES):
        return _rerun_without(BLAS_OVERRIDES, args)
    from threadpoolctl import threadpool_limits

    from bench.common import blas_description, load_note

    with threadpool_limits(args.threads, user_api="blas"):
        print(f"BLAS: {blas_description()}")
        print(load_note())
        for name in args.names or BENCHMARKS:
            module, what = BENCHMARKS[name]
            print(f"\n=== {name}: {what}")
            importlib.import_module(module).run(5 if args.quick else args.repeats)
    return 0


def _rerun_without(variables, args) -> int:
    """OpenBLAS reads its environment when NumPy loads it: unset the variables for this
    command alone by running it again in a child process."""
    env = {k: v for k, v in os.environ.items() if k not in variables}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    print(f"(running with {' and '.join(variables)} unset, as on a user's machine)",
          flush=True)
    argv = [sys.executable, "-m", "bench", *args.names, "--repeats", str(args.repeats)]
    argv += ["--quick"] if args.quick else []
    argv += ["--threads", str(args.threads)] if args.threads else []
    return subprocess.run(argv, env=env, cwd=root).returncode


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
