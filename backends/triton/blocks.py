"""Block sizes, warps and index widths of generated kernels, and the autotune space.

The heuristic:
- pointwise: BLOCK = next_power_of_2(numel) clamped to [16, 1024], one program a block.
- reduction: rows are the kept axes flattened, a row the reduced axes flattened. BLOCK_R
  covers the whole row (next_power_of_2(row), at least 16) when that is <=
  `max_row_block` (4096 by default), so softmax is one pass over registers; otherwise
  BLOCK_R = 1024 and each reduction loops over the row (one pass per reduction plus one
  for a full-shape output). A program takes BLOCK_M rows: 1024 // BLOCK_R of them (at
  least 1, at most next_power_of_2(rows)), so short rows (a bias gradient sums a batch
  of 7) do not leave a program nearly idle.
- matmul: BLOCK_M, BLOCK_N = next_power_of_2 of M, N clamped to [16, 64], BLOCK_K =
  next_power_of_2(K) clamped to [16, 32] (16 is the smallest K tl.dot takes for 16-bit
  inputs on sm_90; 64x64x32 fp32 tiles compile without spills), 3 pipeline stages, and
  tiles taken in groups of GROUP_M rows of tiles (L2 reuse of the B tiles). When the
  tiles would leave most of the GPU's SMs idle and K is long, K is split (`split_k`):
  each of SPLIT programs a tile sums its share of K into a float32 workspace, and a
  second kernel adds the shares and applies the epilogue.
Index arithmetic is int32 unless an index could pass 2**31 - 1: a tensor the kernel
touches with 2**31 elements or more, or the tail lanes of the last block (the grid's
padded extent); then program ids and aranges are widened with `.to(tl.int64)` first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT32_LIMIT = 2**31 - 1
MAX_ROW_BLOCK = 4096
LOOP_ROW_BLOCK = 1024
ROW_TILE = 1024       # a reduction program holds BLOCK_M rows of BLOCK_R: up to this many
H100_SMS = 132        # the SMs a grid should fill when no device says how many it has
GROUP_M = 8           # rows of tiles a group of matmul programs takes before moving on
MIN_SPLIT_K = 256     # the least K a share of a split-K matmul gets (8 BLOCK_K steps)
PRECISIONS = ("ieee", "tf32", "bf16")   # float32 tl.dot: exact, tf32 or bf16 operands


@dataclass(frozen=True)
class Settings:
    """What a program's kernels are generated for, beside the shapes: the longest
    reduction row held in one block, the float32 matmuls' precision (accumulation is
    float32 in every one), and the SMs a matmul's grid should fill."""
    max_row_block: int = MAX_ROW_BLOCK
    precision: str = "ieee"
    sms: int = H100_SMS


@dataclass(frozen=True)
class Config:
    """One way to launch a kernel: its constexpr block sizes, warps and pipeline stages."""
    blocks: dict
    num_warps: int
    num_stages: int = 3


def next_power_of_2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def clamp(v, lo, hi):
    return max(lo, min(hi, v))


def numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def padded(n: int, block: int) -> int:
    return -(-n // block) * block


def pointwise_blocks(numel: int) -> dict:
    return {"BLOCK": clamp(next_power_of_2(numel), 16, 1024)}


def reduction_blocks(row: int, n_rows: int, max_row_block: int = MAX_ROW_BLOCK) -> dict:
    block = max(next_power_of_2(row), 16)
    block = block if block <= max_row_block else min(LOOP_ROW_BLOCK, max_row_block)
    rows = clamp(ROW_TILE // block, 1, next_power_of_2(n_rows))
    return {"BLOCK_M": rows, "BLOCK_R": block}


def matmul_blocks(m: int, n: int, k: int) -> dict:
    return {"BLOCK_M": clamp(next_power_of_2(m), 16, 64),
            "BLOCK_N": clamp(next_power_of_2(n), 16, 64),
            "BLOCK_K": clamp(next_power_of_2(k), 16, 32), "GROUP_M": GROUP_M}


def split_k(tiles: int, k: int, sms: int = H100_SMS) -> int:
    """How many shares K is split into: 1 when the tiles already give every SM a
    program; else the least power of 2 that does, as long as each share keeps at least
    MIN_SPLIT_K of K (a short share costs more in the second kernel than it saves)."""
    split = 1
    while tiles * split < sms and k // (split * 2) >= MIN_SPLIT_K:
        split *= 2
    return split


def pointwise_warps(blocks: dict) -> int:
    return 4 if blocks["BLOCK"] >= 512 else 1


def reduction_warps(blocks: dict) -> int:
    return clamp(blocks["BLOCK_M"] * blocks["BLOCK_R"] // 512, 1, 8)


def matmul_warps(blocks: dict) -> int:
    # 8 warps for a 64x64 tile: 16 accumulators a thread leave ptxas room (with 4 warps a
    # 64x64x16 fp32 tile spills a few bytes on sm_90)
    return 8 if blocks["BLOCK_M"] * blocks["BLOCK_N"] >= 4096 else 4


def index_dtype(shapes, reach: int) -> str:
    """int64 when an index may pass int32: an offset into a tensor of one of `shapes`,
    or `reach`, the largest index a lane computes before it is masked (the padded
    extent of the grid's blocks: the tail lanes of the last block count too, or a
    wrapped offset would pass the mask)."""
    big = max([reach] + [numel(s) for s in shapes]) > INT32_LIMIT
    return "int64" if big else "int32"


# The matmul autotune space: (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages), smaller and
# larger tiles than the heuristic's and 2-5 pipeline stages. Every row compiles for sm_90
# without spills on the MLP's kernels (tests/backends/test_triton_aot.py); 128x128 fp32
# tiles (64 accumulators a thread at 8 warps) are left out: they spill.
MATMUL_SPACE = ((32, 32, 32, 4, 2), (32, 64, 32, 4, 3), (64, 32, 32, 4, 3),
                (64, 64, 32, 4, 4), (64, 64, 64, 8, 3), (128, 64, 32, 8, 3),
                (64, 128, 32, 8, 4), (128, 64, 32, 8, 5))


def autotune_configs(kind: str, config: Config) -> list:
    """[Config]: the heuristic's choice first, then neighbours worth timing on a real
    GPU. The generated code depends on whether a block covers a whole reduction row or
    the whole K of a matmul, so BLOCK_R is kept and BLOCK_K only grows."""
    blocks, base = config.blocks, [config]
    if kind == "pointwise":
        b = blocks["BLOCK"]
        return base + [Config({"BLOCK": v}, w) for v, w in
                       ((max(b // 2, 16), 4), (min(b * 2, 4096), 8)) if v != b]
    if kind == "reduction":
        m = blocks["BLOCK_M"]
        return base + [Config(dict(blocks, BLOCK_M=v), w)
                       for v, w in ((max(m // 2, 1), 4), (m * 2, 8)) if v != m]
    if kind != "matmul":
        return base
    configs = base
    for m, n, k, w, stages in MATMUL_SPACE:
        config = Config(dict(blocks, BLOCK_M=m, BLOCK_N=n, BLOCK_K=max(k, blocks["BLOCK_K"])),
                        w, stages)
        if config not in configs:
            configs = configs + [config]
    return configs
