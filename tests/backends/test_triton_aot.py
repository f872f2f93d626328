"""Every kernel the triton backend generates for the MLP training graph (784-512-512-10,
batch 64, after fusion) and for the softmax cross-entropy graph compiles ahead of time
for an H100 (sm_90, no GPU here) to PTX and a cubin, and `ptxas -v` reports no spills.

Compiles take seconds each, so each graph is compiled once per session (fixtures) and
triton's own cache makes reruns fast.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.backends.triton import aot, host
from graphc.backends.triton import program as programs
from graphc.backends.triton.blocks import autotune_configs
from graphc.ir import Graph
from graphc.passes import optimize
from graphc.passes.fusion import fuse


def fused(outputs, updates=None):
    return fuse(optimize(Graph(outputs, updates), "O1"))


def compile_graph(graph, dims):
    program = programs.generate(graph, dims)
    return program, aot.compile_program(program, "sm_90")


@pytest.fixture(scope="module")
def mlp_training():
    x = gc.input("x", ("batch", 784))
    y = gc.input("y", ("batch",), dtype="int64")
    out, params = gc.nn.mlp(x, [784, 512, 512, 10])
    loss = gc.nn.softmax_cross_entropy(out, y)
    return compile_graph(fused([loss], gc.optim.sgd(loss, params, lr=0.1)), {"batch": 64})


@pytest.fixture(scope="module")
def softmax_cross_entropy():
    logits = gc.input("logits", ("batch", 10))
    y = gc.input("y", ("batch",), dtype="int64")
    loss = gc.nn.softmax_cross_entropy(logits, y)
    (dlogits,) = gc.grad(loss, [logits])
    return compile_graph(fused([loss, dlogits]), {"batch": 64})


def assert_compiled_without_spills(program, stats):
    assert [s["name"] for s in stats] == [k.name for k in program.kernels]
    for s in stats:
        assert s["arch"] == "sm_90" and s["cubin_bytes"] > 0 and s["ptx_bytes"] > 0, s
        assert 0 < s["registers"] <= 255, s
        assert s["spill_stores"] == 0 and s["spill_loads"] == 0, s


def test_mlp_training_kernels_compile_for_sm90_without_spills(mlp_training):
    program, stats = mlp_training
    assert {"matmul", "reduction", "pointwise"} <= {s["kind"] for s in stats}
    assert_compiled_without_spills(program, stats)


def test_softmax_cross_entropy_kernels_compile_for_sm90_without_spills(softmax_cross_entropy):
    program, stats = softmax_cross_entropy
    assert "reduction" in {s["kind"] for s in stats}
    assert_compiled_without_spills(program, stats)


def test_looped_reductions_and_int64_indexing_compile():
    x = gc.input("x", ("rows", "cols"))
    long_rows = Graph([gc.nn.softmax(x, axis=-1)])
    program, stats = compile_graph(long_rows, {"rows": 8, "cols": 10000})
    assert any("for r0 in range" in k.source for k in program.kernels)
    assert_compiled_without_spills(program, stats)
    v = gc.input("v", ("n",))
    program, stats = compile_graph(Graph([gc.exp(v) * 2]), {"n": 2**31 + 5})
    assert ".to(tl.int64)" in program.kernels[0].source
    assert_compiled_without_spills(program, stats)


def test_compile_for_through_the_function():
    x = gc.input("x", ("batch", 5))
    W = gc.param("W", np.ones((5, 3), np.float32))
    fn = gc.compile(gc.relu(x @ W).sum(), backend="triton")
    fn(x=np.ones((4, 5), np.float32))
    stats = fn.compile_for("sm_90")
    assert len(stats) == len(fn.kernels)
    assert all(s["spill_stores"] == 0 for s in stats)
    with pytest.raises(ValueError, match="arch"):
        fn.compile_for("volta")


def test_autotuned_programs_carry_the_heuristic_config_first():
    x = gc.input("x", (7, 129))
    program = programs.generate(Graph([gc.nn.softmax(x) @ gc.transpose(x)]), {})
    source = host.module_source(program, "cuda", autotune=True)
    assert source.count("@triton.autotune") == len(program.kernels)
    for kernel in program.kernels:
        configs = autotune_configs(kernel.kind, kernel.blocks, kernel.num_warps)
        assert configs[0] == (kernel.blocks, kernel.num_warps) and len(configs) >= 2
        (launch,) = [line for line in source.splitlines()
                     if line.strip().startswith(f"{kernel.name}[")]
        arguments = launch.split("](")[1]          # after the grid lambda
        assert "BLOCK" not in arguments           # the autotuner picks the block sizes
