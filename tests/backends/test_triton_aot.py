"""Every kernel the triton backend generates for the MLP training graph (784-512-512-10,
after fusion) and for the softmax cross-entropy graph compiles ahead of time for an H100
(sm_90, no GPU here) to PTX and a cubin, and `ptxas -v` reports no spills, in every
config of the autotune space. The PTX shows what a GPU would run: tensor-core
instructions (wgmma or mma) for tf32 and bf16 matmuls, FMAs for ieee ones, and 16-byte
loads (ld.global.v4, or cp.async of 16 bytes into shared memory) for operands read in
order.

Compiles take seconds each, so each graph is compiled once per session (fixtures) and
triton's own cache makes reruns fast.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.backends.triton import aot, host
from graphc.backends.triton import program as programs
from graphc.backends.triton import blocks
from graphc.backends.triton.blocks import Settings, autotune_configs
from graphc.ir import Graph
from graphc.passes import optimize
from graphc.passes.fusion import fuse


def fused(outputs, updates=None):
    return fuse(optimize(Graph(outputs, updates), "O1"))


def compile_graph(graph, dims, precision="ieee", every_config=False):
    program = programs.generate(graph, dims, Settings(precision=precision))
    return program, aot.compile_program(program, "sm_90", every_config=every_config)


def mlp_training_graph():
    x = gc.input("x", ("batch", 784))
    y = gc.input("y", ("batch",), dtype="int64")
    out, params = gc.nn.mlp(x, [784, 512, 512, 10])
    loss = gc.nn.softmax_cross_entropy(out, y)
    return fused([loss], gc.optim.sgd(loss, params, lr=0.1))


DIMS = {"batch": 256}


@pytest.fixture(scope="module", params=["ieee", "tf32", "bf16"])
def mlp_training(request):
    """At batch 256 two matmuls split K (their grids would fill a quarter of the SMs)."""
    return compile_graph(mlp_training_graph(), DIMS, request.param)


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
    assert any(k.workspace for k in program.kernels)            # split-K is among them
    assert_compiled_without_spills(program, stats)


def dot_kernels(program, stats, aligned=False):
    """(kernel, stats) of the kernels that multiply tiles; `aligned`: only those whose
    operands' rows all start 16 bytes apart (a row of 10 floats cannot be copied 16 bytes
    at a time)."""
    return [(launch.kernel, s) for launch, s in zip(program.launches, stats)
            if ("tl.dot(" in launch.kernel.source or "_dot_bf16(" in launch.kernel.source)
            and not (aligned and any(o.type.concrete_shape(DIMS)[-1] % 4
                                     for o in launch.operands))]


def test_tensor_cores_run_tf32_and_bf16_matmuls_and_fmas_ieee_ones(mlp_training):
    program, stats = mlp_training
    dots = dot_kernels(program, stats)
    assert len(dots) >= 8
    precision = "tf32" if 'input_precision="tf32"' in dots[0][0].source else (
        "bf16" if "_dot_bf16(" in dots[0][0].source else "ieee")
    for kernel, s in dots:
        assert (s["mma"] > 0) == (precision != "ieee"), (kernel.name, s)


def test_matmul_operand_tiles_load_16_bytes_at_a_time(mlp_training):
    """bf16 and ieee tiles are copied into shared memory 16 bytes at a time. tf32 ones
    only where read along K (a forward's activations): sm_90's tf32 wgmma takes both
    tiles K-major from shared memory, so Triton copies a tile contiguous along M or N
    (weights, both operands of a weight gradient) 4 bytes at a time."""
    program, stats = mlp_training
    dots = dot_kernels(program, stats, aligned=True)
    assert len(dots) >= 5
    tf32 = 'input_precision="tf32"' in dots[0][0].source
    for kernel, s in dots:
        assert s["wide_loads"] > 0 or (tf32 and "_matmul_mul_sub" in kernel.name), (kernel.name, s)
        assert tf32 or s["narrow_copies"] == 0, (kernel.name, s)


def test_pointwise_loads_in_order_are_16_bytes(mlp_training):
    program, stats = mlp_training
    pointwise = [(k, s) for k, s in zip(program.kernels, stats) if k.kind == "pointwise"
                 and k.blocks["BLOCK"] >= 256 and "tl.load(in0_ptr + offs," in k.source]
    assert pointwise
    for kernel, s in pointwise:
        assert s["wide_loads"] > 0, (kernel.name, s)


@pytest.mark.slow
def test_every_autotune_config_of_the_mlp_compiles_without_spills():
    """The whole space the autotuner may time on a GPU (tf32, batch 256: split-K and
    whole-K kernels), not only the heuristic's configs: about 140 compiles, a minute."""
    program, stats = compile_graph(mlp_training_graph(), DIMS, "tf32",
                                   every_config=True)
    configs = host.kernel_configs(program)
    assert len(stats) == sum(map(len, configs.values())) > 2 * len(program.kernels)
    assert {s["num_stages"] for s in stats} >= {2, 3, 4, 5}
    for s in stats:
        assert s["spill_stores"] == 0 and s["spill_loads"] == 0, s


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
    stats = fn.compile_for("sm_90")     # every kernel in every config, the heuristic's first
    configs = host.kernel_configs(fn._executable().program)
    assert [s["name"] for s in stats] == [k.name for k in fn.kernels for _ in configs[k.name]]
    for k in fn.kernels:
        mine = [s for s in stats if s["name"] == k.name]
        assert [(s["blocks"], s["num_warps"], s["num_stages"]) for s in mine] == [
            (c.blocks, c.num_warps, c.num_stages) for c in configs[k.name]]
    assert all(s["spill_stores"] == 0 for s in stats)
    with pytest.raises(ValueError, match="arch"):
        fn.compile_for("volta")


def test_autotuned_programs_carry_the_heuristic_config_first():
    x = gc.input("x", (7, 129))
    program = programs.generate(Graph([gc.nn.softmax(x) @ gc.transpose(x)]), {})
    source = host.module_source(program, "cuda", autotune=True)
    assert source.count("@triton.autotune") == len(program.kernels)
    for kernel in program.kernels:
        configs = autotune_configs(kernel.kind, kernel.config)
        assert configs[0] == kernel.config and len(configs) >= 2
        if kernel.kind == "matmul":
            assert {c.num_stages for c in configs} == {2, 3, 4, 5}
        (launch,) = [line for line in source.splitlines()
                     if line.strip().startswith(f"{kernel.name}[")]
        arguments = launch.split("](")[1]          # after the grid lambda
        assert "BLOCK" not in arguments           # the autotuner picks the block sizes
    heuristic = blocks.Config(blocks.matmul_blocks(256, 512, 784), 8)
    sizes = {c.blocks["BLOCK_M"] * c.blocks["BLOCK_N"] for c in
             autotune_configs("matmul", heuristic)}
    assert min(sizes) < 64 * 64 < max(sizes)        # smaller and larger tiles than 64x64


def test_the_autotune_space_is_pruned_to_configs_that_do_not_spill():
    """What a GPU build times: each kernel's configs that compile there without spills,
    in the space's order (here every one of them: none spills on sm_90)."""
    x, w = gc.input("x", (64, 300)), gc.input("w", (300, 96))
    program = programs.generate(Graph([gc.relu(x @ w)]), {}, Settings(precision="tf32"))
    kept = aot.spill_free_configs(program, "sm_90")
    assert kept == host.kernel_configs(program)
    source = host.module_source(program, "cuda", autotune=True, configs=kept)
    assert source.count("triton.Config(") == sum(map(len, kept.values()))
    assert "num_stages=5" in source
