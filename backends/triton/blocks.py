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
  inputs on sm_90; 64x64x32 fp32 tiles compile without spills).
Index arithmetic is int32 unless an index could pass 2**31 - 1: a tensor the kernel
touches with 2**31 elements or more, or the tail lanes of the last block (the grid's
padded extent); then program ids and aranges are widened with `.to(tl.int64)` first.
"""

from __future__ import annotations

import numpy as np

INT32_LIMIT = 2**31 - 1
MAX_ROW_BLOCK = 4096
LOOP_ROW_BLOCK = 1024
ROW_TILE = 1024       # a reduction program holds BLOCK_M rows of BLOCK_R: up to this many


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
            "BLOCK_K": clamp(next_power_of_2(k), 16, 32)}


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


def autotune_configs(kind: str, blocks: dict, num_warps: int) -> list:
    """[(blocks, num_warps)]: the heuristic's choice first, then neighbours worth timing
    on a real GPU. The generated code depends on whether a block covers a whole
    reduction row or the whole K of a matmul, so BLOCK_R is kept and BLOCK_K only grows."""
    base = [(dict(blocks), num_warps)]
    if kind == "pointwise":
        b = blocks["BLOCK"]
        return base + [({"BLOCK": v}, w) for v, w in ((max(b // 2, 16), 4), (min(b * 2, 4096), 8))
                       if v != b]
    if kind == "reduction":
        m = blocks["BLOCK_M"]
        return base + [(dict(blocks, BLOCK_M=v), w) for v, w in ((max(m // 2, 1), 4),
                                                                  (m * 2, 8)) if v != m]
    bigger = {k: min(v * 2, 128) for k, v in blocks.items()}
    return base + [(bigger, 8)] if bigger != blocks else base
