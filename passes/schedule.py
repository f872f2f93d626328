"""schedule: a memory-aware execution order, liveness, and a buffer plan.

`schedule(graph)` returns the same nodes in an order chosen to keep live memory low. It
starts from a memory-first depth-first order (at each node, the input subcomputation
that needs the most memory beyond its result runs first, Sethi-Ullman's rule), then runs
a greedy list scheduler over a heap: among the ready nodes it first runs one whose
running frees more bytes (inputs it is the last user of) than it allocates, the biggest
saving first; when none does, it follows the memory-first order. The candidate orders
(greedy, memory-first, plain depth-first, and the order the graph came in) are costed by
`plan_buffers` and the cheapest is kept, so the schedule is never worse than the plain
depth-first order or the given one. Symbolic dims are costed at SYMBOLIC_DIM_ESTIMATE
each. A graph with collectives then has each all_reduce split into a start and a wait,
placed so that communication overlaps computation (overlap.py).

`plan_buffers(graph, dims, alias_of)` walks the graph's order and gives every value that
needs storage a buffer: a byte arena reused by any later value once the value it holds
is dead (best fit; a too-small free buffer grows rather than a new one being made). An
elementwise op whose input of the same shape and dtype dies at that op writes into the
input's buffer (`in_place`); so does a pointwise fused kernel over an operand that its
body reads only through elementwise ops, all the way to its result. Values that are
outputs or update values live to the end of the call. An alias (a view of its input, as
the backend reports through `alias_of`) takes no buffer and keeps its base's buffer
alive while it lives. Shapes are compared as written (symbolic dims by name), so a plan
made at one binding of the symbolic dims is valid at every other (`held` lists each
buffer's values: its size there is their largest). Buffers, once made, stay for the
whole call (they are preallocated arenas), so the plan's peak is the total of the buffer sizes; the naive
plan gives every non-source value its own.

Everything here is a loop over the order with dicts, heaps and a free list kept in a
Fenwick tree over the possible buffer sizes (best fit in O(log n)), each node's work in
its own inputs and users: O(n log n) in the nodes and edges, no recursion.
"""

from __future__ import annotations

import bisect
import heapq
from collections import defaultdict
from dataclasses import dataclass

from graphc import ops
from graphc.ir import SOURCE_OPS, Graph, Node, node_names

from .overlap import overlap

SYMBOLIC_DIM_ESTIMATE = 64


# --- the buffer plan -----------------------------------------------------------------------

@dataclass(frozen=True)
class BufferPlan:
    order: list       # nodes in execution order (the graph's order)
    buffer: dict      # node -> buffer index, for every non-source node that needs storage
    sizes: list       # bytes of each buffer (max over the values it holds)
    in_place: dict    # node -> the input whose buffer it overwrites
    last_use: dict    # node -> index in order of its last use (roots: len(order))
    peak_bytes: int   # live buffer bytes at the peak of this plan (= sum of sizes)
    naive_bytes: int  # sum of nbytes of every non-source value
    held: list = None  # per buffer: the types of the values it holds (its size at
                       # another binding of the symbolic dims is their largest nbytes)


def _last_uses(graph: Graph) -> dict:
    end = len(graph.nodes)
    last_use = {}
    for i, node in enumerate(graph.nodes):
        last_use.setdefault(node, i)
        for inp in node.inputs:
            last_use[inp] = i
    for root in list(graph.outputs) + list(graph.updates.values()):
        last_use[root] = end
    return last_use


def _storage_owners(order, alias_of) -> dict:
    """node -> the node that owns its storage (itself unless it is a view; follow chains)."""
    owner = {}
    for node in order:
        base = alias_of(node) if node.op not in SOURCE_OPS else None
        owner[node] = node if base is None else owner[base]
    return owner


def _pointwise_operands(node: Node) -> tuple:
    """The inputs that element k of node's result reads only at element k (so the result
    may overwrite them as it goes): every input of an elementwise op or of an op with the
    in_place trait (a collective's start and wait); the inputs of a pointwise kernel
    whose every path to the body's result runs through elementwise ops only (a layout op
    anywhere after them, a transpose of exp(x), moves elements)."""
    if ops.is_elementwise(node.op) or ops.has(node.op, "in_place"):
        return node.inputs
    if node.op != "fused" or node.attrs["kind"] != "pointwise":
        return ()
    body, users = node.body, node.body.users
    aligned = set(body.outputs)   # body nodes read element for element by the result
    for n in reversed(body.nodes):
        if users[n] and all(ops.is_elementwise(u.op) and u in aligned for u in users[n]):
            aligned.add(n)
    return tuple(operand for operand, param in zip(node.inputs, body.inputs)
                 if param in aligned)


def _can_write_in_place(node: Node, inp: Node, dims, owner, live_until, buffer, i,
                        viewed) -> bool:
    return (inp in buffer and owner[inp] is inp and live_until[inp] == i
            and inp.dtype == node.dtype
            # the same shape at every binding of the symbolic dims (a plan made at one
            # binding serves all of them in a shape-generic build)
            and inp.type.shape == node.type.shape
            # a view of inp read by the same op would see its input overwritten
            and inp not in viewed)


def _in_place_operand(node: Node, dims, owner, live_until, buffer, i) -> Node | None:
    """The first pointwise operand whose buffer node may overwrite, or None."""
    viewed = {owner[other] for other in node.inputs if owner[other] is not other}
    return next((inp for inp in dict.fromkeys(_pointwise_operands(node))
                 if _can_write_in_place(node, inp, dims, owner, live_until, buffer, i,
                                        viewed)), None)


class _FreeList:
    """Free buffers by size: best fit, the smallest size >= need (the lowest index among
    equals), else the largest one to be grown (the highest index among equals). Sizes
    are ranks into the sizes a buffer can have (every value's nbytes); a Fenwick tree
    counts free buffers per rank, so each take or add is O(log n)."""

    def __init__(self, sizes):
        self._sizes = sorted(set(sizes))
        self._rank = {size: r for r, size in enumerate(self._sizes)}
        self._tree = [0] * (len(self._sizes) + 1)  # Fenwick tree of counts, 1-based
        self._free = {}   # rank -> _Bucket of the free buffers of that size
        self._count = 0

    def add(self, size: int, index: int):
        rank = self._rank[size]
        self._free.setdefault(rank, _Bucket()).push(index)
        self._update(rank, 1)

    def take(self, need: int) -> int | None:
        if not self._count:
            return None
        wanted = bisect.bisect_left(self._sizes, need)
        before = self._prefix(wanted)  # free buffers smaller than need
        if before < self._count:
            rank = self._find(before + 1)
            index = self._free[rank].pop_lowest()
        else:
            rank = self._find(self._count)
            index = self._free[rank].pop_highest()
        self._update(rank, -1)
        return index

    def _update(self, rank: int, delta: int):
        self._count += delta
        i = rank + 1
        while i < len(self._tree):
            self._tree[i] += delta
            i += i & -i

    def _prefix(self, rank: int) -> int:
        """Free buffers of ranks below `rank`."""
        total, i = 0, rank
        while i > 0:
            total += self._tree[i]
            i -= i & -i
        return total

    def _find(self, k: int) -> int:
        """The rank holding the k-th free buffer (1-based) in size order."""
        pos, step = 0, 1 << (len(self._tree) - 1).bit_length()
        while step:
            if pos + step < len(self._tree) and self._tree[pos + step] < k:
                pos += step
                k -= self._tree[pos]
            step >>= 1
        return pos  # the 1-based position pos + 1 is rank pos


class _Bucket:
    """Buffer indices of one size, taken lowest or highest first: two heaps, each
    dropping lazily what the other gave out."""

    def __init__(self):
        self._low, self._high, self._held = [], [], set()

    def push(self, index: int):
        self._held.add(index)
        heapq.heappush(self._low, index)
        heapq.heappush(self._high, -index)

    def pop_lowest(self) -> int:
        return self._pop(self._low, 1)

    def pop_highest(self) -> int:
        return self._pop(self._high, -1)

    def _pop(self, heap: list, sign: int) -> int:
        while True:
            index = sign * heapq.heappop(heap)
            if index in self._held:
                self._held.remove(index)
                return index


def plan_buffers(graph: Graph, dims: dict, alias_of=lambda node: None) -> BufferPlan:
    order = list(graph.nodes)
    last_use = _last_uses(graph)
    owner = _storage_owners(order, alias_of)
    live_until = {}  # storage owner -> last step any value on its storage is used
    for node in order:
        live_until[owner[node]] = max(live_until.get(owner[node], -1), last_use[node])

    buffer, sizes, in_place, holder, held = {}, [], {}, {}, []
    free = _FreeList(node.type.nbytes(dims) for node in order if node.op not in SOURCE_OPS)
    release_at = defaultdict(list)
    naive = 0
    for i, node in enumerate(order):
        if node.op in SOURCE_OPS:
            continue
        nbytes = node.type.nbytes(dims)
        naive += nbytes
        if owner[node] is node:
            reused = _in_place_operand(node, dims, owner, live_until, buffer, i)
            if reused is not None:
                in_place[node], index = reused, buffer[reused]
            else:
                index = free.take(nbytes)
                if index is None:
                    index = len(sizes)
                    sizes.append(0)
                    held.append([])
            sizes[index] = max(sizes[index], nbytes)
            if node.type not in held[index]:
                held[index].append(node.type)
            buffer[node], holder[index] = index, node
            release_at[live_until[node]].append((index, node))
        for index, value in release_at.pop(i, ()):
            if holder[index] is value:  # not handed on to an in-place user
                free.add(sizes[index], index)
    return BufferPlan(order, buffer, sizes, in_place, last_use, sum(sizes), naive, held)


def format_plan(plan: BufferPlan) -> str:
    """The plan as text: one line a value (buffer, reuse, last use), then peak vs naive."""
    names = node_names(plan.order)
    end = len(plan.order)
    lines = []
    for i, node in enumerate(plan.order):
        if node.op in SOURCE_OPS:
            continue
        if node in plan.buffer:
            where = f"buf{plan.buffer[node]}"
            if node in plan.in_place:
                where += f" (in place of %{names[plan.in_place[node]]})"
        else:
            where = "view"
        last = "end" if plan.last_use[node] >= end else str(plan.last_use[node])
        lines.append(f"{i:4d} %{names[node]} = {node.op} : {node.type}  -> {where}, "
                     f"last use {last}")
    ratio = plan.peak_bytes / plan.naive_bytes if plan.naive_bytes else 1.0
    lines.append(f"buffers: {len(plan.sizes)}, peak {plan.peak_bytes} bytes vs naive "
                 f"{plan.naive_bytes} bytes (ratio {ratio:.3f})")
    return "\n".join(lines)


# --- the order -------------------------------------------------------------------------------

def _estimate_dims(graph: Graph) -> dict:
    return {d: SYMBOLIC_DIM_ESTIMATE for node in graph.nodes for d in node.shape
            if isinstance(d, str)}


def _sizes(graph: Graph, dims: dict) -> dict:
    return {node: 0 if node.op in SOURCE_OPS else node.type.nbytes(dims)
            for node in graph.nodes}


def memory_first_order(graph: Graph, dims: dict) -> list:
    """Depth-first order that visits, at each node, the input needing the most memory
    beyond its own result first (Sethi-Ullman's rule for trees; on a DAG a heuristic),
    so that small results wait while big subcomputations run, not the other way round."""
    size = _sizes(graph, dims)
    need, children = {}, {}
    for node in graph.nodes:
        kids = sorted(dict.fromkeys(node.inputs), key=lambda c: size[c] - need[c])
        held = peak = 0
        for kid in kids:
            peak = max(peak, held + need[kid])
            held += size[kid]
        need[node], children[node] = max(peak, held + size[node]), kids
    order, seen = [], set()
    for root in graph.roots:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, 0)]
        while stack:
            node, i = stack.pop()
            if i < len(children[node]):
                stack.append((node, i + 1))
                kid = children[node][i]
                if kid not in seen:
                    seen.add(kid)
                    stack.append((kid, 0))
            else:
                order.append(node)
    return order


def greedy_order(graph: Graph, dims: dict) -> list:
    """Sources first; then ready nodes that free more bytes than they allocate (most
    first), else the ready node earliest in the graph's order."""
    nodes = graph.nodes
    position = {node: i for i, node in enumerate(nodes)}
    users = graph.users
    roots = set(graph.outputs) | set(graph.updates.values())
    size = _sizes(graph, dims)
    remaining = {node: len(users[node]) for node in nodes}  # users not yet run
    waiting = {node: len(dict.fromkeys(node.inputs)) for node in nodes}  # inputs not yet run
    done = set()
    # node -> bytes of its inputs it is the last user of left (kept as inputs run, so a
    # re-ranking costs O(1), not a walk over a wide node's inputs)
    freed = dict.fromkeys(nodes, 0)
    for node in nodes:
        if remaining[node] == 1 and node not in roots:
            freed[users[node][0]] += size[node]

    def gain(node):
        return max(freed[node] - size[node], 0)

    heap = []

    def push(node):
        heapq.heappush(heap, (-gain(node), position[node], node))

    order = []

    def run(node):
        order.append(node)
        done.add(node)
        for inp in dict.fromkeys(node.inputs):
            remaining[inp] -= 1
            if remaining[inp] == 1:  # its last user now frees it: re-rank that user
                last = next(u for u in users[inp] if u not in done)
                freed[last] += 0 if inp in roots else size[inp]
                if waiting[last] == 0:
                    push(last)
        for user in users[node]:
            waiting[user] -= 1
            if waiting[user] == 0:
                push(user)

    for node in nodes:
        if node.op in SOURCE_OPS:
            run(node)
    for node in nodes:
        if waiting[node] == 0 and node not in done and node.op not in SOURCE_OPS:
            push(node)
    while heap:
        node = heapq.heappop(heap)[-1]
        if node not in done:
            run(node)
    return order


def schedule(graph: Graph) -> Graph:
    """The graph's nodes in the cheapest of the candidate orders (greedy over the
    memory-first order, the memory-first order, the plain depth-first order, the order
    the graph came in), costed by plan_buffers with symbolic dims estimated; ties keep
    the earlier candidate."""
    dims = _estimate_dims(graph)
    depth_first = Graph(graph.outputs, graph.updates)
    memory_first = Graph(graph.outputs, graph.updates,
                         order=memory_first_order(depth_first, dims))
    greedy = Graph(graph.outputs, graph.updates, order=greedy_order(memory_first, dims))
    # A pass hands over a depth-first graph, so orders repeat: cost each distinct one once.
    candidates = {}
    for candidate in (greedy, memory_first, depth_first, graph):
        candidates.setdefault(tuple(map(id, candidate.nodes)), candidate)
    # Collectives are split into start and wait and placed for overlap last (overlap.py).
    return overlap(min(candidates.values(), key=lambda g: plan_buffers(g, dims).peak_bytes))
