"""The collectives' runtime: all_reduce on torch.distributed, and a step's agreement.

Every backend runs its graph's collectives through one `Collectives` object per
executable: a collective node is a call of the method of its op's name, its operand,
the array its value goes into and its attributes as keywords (`call_source` writes
it). `all_reduce_start(x, out, op)` copies x into out unless it is out already (the
buffer plan usually hands a start its operand's buffer), and issues an asynchronous
all-reduce of out on torch.distributed's default process group (gloo on CPU, NCCL on
CUDA). A NumPy array is reduced through `torch.from_numpy`, a tensor that shares its
memory: the collective reads and writes the numpy backend's buffer itself, no copy.
`all_reduce_wait(h, out)` blocks until the all-reduce of h has completed, divides it
by the number of workers for op="mean", and copies it to out unless it is h already.
`all_reduce` is both at once.
Without a process group (one process, no torch.distributed set up) a collective is its
operand: nothing is imported, so the NumPy path needs no torch.

A step is agreed on before any param changes (`settle`): once every collective has
completed, the workers all-reduce one flag each ("my step failed"), and a worker whose
step failed is named in the others' errors. A worker whose step raises before that
(`abandon`) still issues the rest of the step's collectives, with zeros, so the others
are not left waiting, then votes "failed": every worker raises, none commits. A peer
that dies or hangs makes the collective in progress fail within the process group's
timeout (gc.parallel.init(timeout=...)); that error, translated to a CollectiveError
that names the collective and the worker, ends the step.

Timings of the last step's collectives (`timings`: issued, waited for, done, in
seconds of time.perf_counter) tell how much communication the computation hid.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from graphc import ops
from graphc.errors import CollectiveError

# The ops that issue a communication (a wait completes one a start issued).
ISSUING = frozenset(op for op in ops.with_trait("collective") if "op" in ops.OPS[op].attrs)


def call_source(collectives: str, node, x: str, out: str) -> str:
    """`collectives.all_reduce_start(x, out, op='mean')`: the source of node's call."""
    attrs = "".join(f", {name}={value!r}" for name, value in sorted(node.attrs.items()))
    return f"{collectives}.{node.op}({x}, {out}{attrs})"


def symbolic_dims_of_collectives(graph) -> set:
    """The symbolic dims in the shapes of a graph's collectives: a build is fixed to
    them (`abandon` issues zeros of each remaining collective's shape)."""
    return {d for n in graph.nodes if ops.has(n.op, "collective")
            for d in n.shape if isinstance(d, str)}


def process_group():
    """torch.distributed when its default process group is set up, else None (one
    worker). torch is never imported here: a group exists only if someone imported it."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def world() -> tuple:
    """(this worker's rank, the number of workers)."""
    dist = process_group()
    return (0, 1) if dist is None else (dist.get_rank(), dist.get_world_size())


def as_tensor(array):
    """A torch tensor on the same memory (a NumPy array through torch.from_numpy)."""
    if isinstance(array, np.ndarray):
        return sys.modules["torch"].from_numpy(array)
    return array


def _address(array) -> int:
    if isinstance(array, np.ndarray):
        return array.__array_interface__["data"][0]
    return array.data_ptr()


def _copy(out, x):
    if _address(out) != _address(x) or out.shape != x.shape:
        if isinstance(out, np.ndarray):
            np.copyto(out, x)
        else:
            out.copy_(x)


class Collectives:
    """One executable's collectives, in the order it issues them (`sequence`: shape,
    dtype, the user's line), and the state of the current step."""

    def __init__(self, graph, dims: dict, device: str = "cpu"):
        self.sequence = [(n.type.concrete_shape(dims), n.dtype, n.loc) for n in graph.nodes
                         if n.op in ISSUING]
        self.device = device
        self.pending = {}   # address of a buffer in flight -> (work, tensor, op, index)
        self.issued = 0     # collectives issued in the current step
        self.settled = True
        self.timings = []   # the current step's [issued, waited for, done] per collective

    def begin_step(self):
        self.issued, self.settled, self.timings = 0, False, []

    # the ops ----------------------------------------------------------------------

    def all_reduce_start(self, x, out, op: str):
        _copy(out, x)
        index = self.issued
        self.issued += 1
        self.timings.append([time.perf_counter(), None, None])
        dist = process_group()
        tensor = out if dist is None else as_tensor(out)
        work = None if dist is None else self._call(
            index, lambda: dist.all_reduce(tensor, dist.ReduceOp.SUM, async_op=True))
        self.pending[_address(out)] = (work, tensor, op, index)
        return out

    def all_reduce_wait(self, h, out):
        entry = self.pending.pop(_address(h), None)
        if entry is not None:  # (else `settle` completed it already)
            self._complete(*entry)
        _copy(out, h)
        return out

    def all_reduce(self, x, out, op: str):
        return self.all_reduce_wait(self.all_reduce_start(x, out, op), out)

    def _complete(self, work, tensor, op, index):
        self.timings[index][1] = time.perf_counter()
        if work is not None:
            self._call(index, work.wait)
            if op == "mean":
                tensor.div_(world()[1])
        self.timings[index][2] = time.perf_counter()

    def _call(self, index: int, fn):
        """fn() (issue or wait for collective `index`), its failure as a CollectiveError."""
        began = time.perf_counter()
        try:
            return fn()
        except RuntimeError as e:  # torch's DistBackendError, gloo's timeouts, ...
            raise self._failure(index, time.perf_counter() - began, e) from None

    def _failure(self, index: int, waited: float, error) -> CollectiveError:
        rank, size = world()
        shape, dtype, loc = self.sequence[index] if index < len(self.sequence) else (
            (), "", "")
        what = (f"all_reduce {index + 1} of {len(self.sequence)} of this step "
                f"({dtype}{list(shape)}, made at {loc})" if index < len(self.sequence)
                else "the step's agreement (an all_reduce of each worker's ok flag)")
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        return CollectiveError(
            f"{what} failed on worker {rank} of {size} after {waited:.1f} s: another "
            "worker died, hung past the process group's timeout "
            f"(gc.parallel.init(timeout=...)), or stopped issuing this step's collectives; "
            f"no param was changed here. torch.distributed: {detail}")

    # the step's agreement -----------------------------------------------------------

    def settle(self):
        """Every collective of the step completed, then the vote; raises CollectiveError
        naming the workers whose step failed (then no worker commits). Once a step."""
        if self.settled:
            return
        self.settled = True
        self._finish_pending()
        failed = self._vote(failed=False)
        if failed:
            rank, size = world()
            raise CollectiveError(
                f"the step failed on worker{'s' if len(failed) > 1 else ''} "
                f"{', '.join(map(str, failed))} of {size} "
                f"(see {'their' if len(failed) > 1 else 'its'} "
                f"error); no param was changed on any worker (this is worker {rank})")

    def abandon(self, error: BaseException):
        """This worker's step failed with `error`: issue the step's remaining collectives
        with zeros and vote "failed", so the others raise too instead of waiting. Nothing
        to do if the step was settled, or if a collective itself failed (the group is
        broken then; the others' collectives fail as well)."""
        if self.settled or process_group() is None or isinstance(error, CollectiveError):
            self.settled = True
            return
        self.settled = True
        try:
            self._finish_pending()
            torch = sys.modules["torch"]
            for shape, dtype, _ in self.sequence[self.issued:]:
                zeros = torch.zeros(shape, dtype=getattr(torch, dtype), device=self.device)
                self.all_reduce(zeros, zeros, "sum")
            self._vote(failed=True)
        except CollectiveError:
            pass  # the group broke meanwhile: the others fail on their own collective

    def _finish_pending(self):
        while self.pending:
            address = next(iter(self.pending))
            work, tensor, op, index = self.pending.pop(address)
            self._complete(work, tensor, op, index)

    def _vote(self, failed: bool) -> list:
        dist = process_group()
        if dist is None or not self.sequence:
            return []
        torch = sys.modules["torch"]
        rank, size = world()
        flags = torch.zeros(size, dtype=torch.int64, device=self.device)
        flags[rank] = int(failed)
        self._call(len(self.sequence), lambda: dist.all_reduce(flags, dist.ReduceOp.SUM))
        return [r for r in range(size) if flags[r].item()]
