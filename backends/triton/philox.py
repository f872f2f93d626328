"""The Triton kernel of the `philox` op (gc.random): Triton's own tl.philox, the
Philox-4x32-10 of graphc/philox.py (same constants and rounds; its 64-bit `seed` is the
key's seed), on the counter (element index low, high, stream low, high). With stream 0
this is exactly tl.randint(seed, offset) for a 64-bit offset; the stream words are why
the kernel calls tl.philox itself rather than randint (which fixes them at 0).

One program a BLOCK of the output's elements (row-major, the lanes `offs`); the key's
two int64 words are scalars loaded once a program. The words become values as
graphc/philox.py's CONVERT says, in the same integer steps, so the bits agree exactly.
"""

from __future__ import annotations

from graphc.backends.lower import index as ix
from graphc.backends.lower.kernel import Kernel

from .indexing import _address, _finished, _start

# dtype -> the value of a draw from its words w0, w1 (uint32 blocks), as in philox.CONVERT
CONVERT = {
    "float32": "(w0 >> 8).to(tl.float32) * 5.9604644775390625e-08",   # 2**-24
    "float64": "((((w1 >> 11).to(tl.uint64) << 32) | w0.to(tl.uint64)).to(tl.float64)"
               " * 1.1102230246251565e-16)",                              # 2**-53
    "int64": "(((w1.to(tl.uint64) << 32) | w0.to(tl.uint64)).to(tl.int64, bitcast=True))",
}


def philox_kernels(name: str, kernel: Kernel, shapes: dict) -> list:
    """The one kernel that computes the kernel's draw."""
    node = kernel.result
    em, lanes, total, blocks = _start(shapes[node])
    k, seed_at = _address(kernel, shapes, lanes, node.inputs[0], (ix.ZERO,))
    _, stream_at = _address(kernel, shapes, lanes, node.inputs[0], (ix.lit(1),))
    em.line(f"seed = tl.load(in{k}_ptr + {seed_at})")
    em.line(f"stream = tl.load(in{k}_ptr + {stream_at})")
    em.line("c0 = offs.to(tl.uint32)")   # (the low 32 bits: a truncation)
    em.line("c1 = (offs >> 32).to(tl.uint32)")
    em.line("c2 = c0 * 0 + (stream & 0xFFFFFFFF).to(tl.uint32)")
    em.line("c3 = c0 * 0 + ((stream >> 32) & 0xFFFFFFFF).to(tl.uint32)")
    em.line("w0, w1, _, _ = tl.philox(seed, c0, c1, c2, c3)")
    em.line(f"tl.store(out_ptr + offs, {CONVERT[node.attrs['dtype']]}, mask=mask)")
    return [_finished(name, kernel, em, blocks, total, {k}, [])]


KERNELS = {"philox": philox_kernels}
