"""The `fuse` pass: group ops into kernels, each one `fused` node.

A kernel is `Node("fused", operands, {"kind": K}, body=Graph)` with one output; the
body's inputs, in the body's order, stand for the operands by position (they print as
in0, in1, ...: the fused-kernel contract the backends generate code from; `check_kernel`
states it as code). Kinds:
- pointwise: elementwise ops over one iteration space; broadcasts, transposes and
  reshapes are index arithmetic, not copies;
- reduction: a pointwise prologue, sum/max reductions over one set of axes of one full
  shape, a pointwise epilogue on the full or reduced shape (softmax, log_softmax,
  logsumexp: one kernel each). Besides elementwise ops it may hold the layout ops that
  only move values between the full shape and the reduced shape with or without its
  kept 1s (broadcast_to, reshape, expand_dims, squeeze: the squeeze ending logsumexp);
- matmul: one matmul whose operands are kernel inputs (at most through a transpose of
  the last two axes), then a pointwise epilogue on its output (bias, activation, the
  ReLU-backward mask where(z > 0, g @ W.T, 0)).

How kernels grow. Nodes are visited consumers first (reverse topological order). A value
that must be stored (a graph output, a value a plain op or several kernels read) becomes
the root, that is the output, of a new kernel. A producer joins its consumers' kernel
when three separate rules allow it, each refusal a one-line reason `explain_fusion`
reports for the producer -> consumer pair:
- capability (`FITS`, `_admit`): the kernel's kind may hold the op where it would sit;
- legality (`FusionPlanner.leads_back`): a producer also needed by a node outside the kernel
  that leads back into it could only join by being stored from inside the kernel: a
  cycle; refused as "would create a cycle through %v" (found by searches bounded by
  topological positions, passes/reachability.py);
- profitability: a value stored anyway gains nothing from joining, and a value read by
  several kernels is recomputed in each only when it is cheap pointwise work whose own
  inputs are stored anyway (`why_not_recompute`); else it is stored.
A node joins only kernels that hold all its users, so every member reaches its kernel's
root inside the kernel: kernels never form a cycle, and each is built once, in order.

A kernel of one op stays a plain node (a lone matmul, reduction or elementwise op is
not wrapped): a `fused` node always saves at least one stored intermediate. Ops that are
none of the above (slice, concat, one_hot, size, fused) stay plain and end kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from graphc import ops
from graphc.errors import ShapeError
from graphc.ir import SOURCE_OPS, Graph, Node, node_names
from graphc.types import format_shape

from .reachability import Reachability
from .rewrite import rebuild

KINDS = ("pointwise", "reduction", "matmul")
# Layout ops a kernel holds: views of their whole operand (a slice, a view of part of
# it, stays a plain op and ends kernels).
LAYOUT_OPS = frozenset(op for op in ops.with_trait("view") - ops.with_trait("partial")
                       if ops.OPS[op].kind == "layout")
# Layout ops a reduction kernel may hold: they only move values between the full shape
# and the reduced shape (with or without the reduced axes kept as 1s), never reorder.
REDUCTION_LAYOUT_OPS = LAYOUT_OPS - ops.with_trait("reorders")
# op kind -> what an op of that kind is to fusion
ROLES = {**{kind: "elementwise" for kind in ops.ELEMENTWISE_KINDS},
         "reduce": "reduce", "matmul": "matmul"}


def role(node: Node) -> str | None:
    """What a node is to fusion: elementwise | layout | reduce | matmul, or None (opaque)."""
    if node.op in LAYOUT_OPS:
        return "layout"
    return ROLES.get(ops.OPS[node.op].kind) if node.op in ops.OPS else None


# --- capability: what each kernel kind may hold ---------------------------------------

@dataclass
class KernelState:
    """What a kernel's members pin down: its kind and, per kind, the shapes that fit."""
    kind: str = "pointwise"
    full: tuple = None       # reduction: the shape reduced
    axes: tuple = None       # reduction: the axes reduced
    keep: tuple = None       # reduction: the reduced shape with the axes kept as 1s
    drop: tuple = None       # reduction: the reduced shape without them
    matmul: Node = None      # matmul: the one matmul
    operands: set = field(default_factory=set)  # matmul: the transposes feeding it

    @property
    def shapes(self) -> tuple:
        return (self.full, self.keep, self.drop)


def state_for(node: Node) -> KernelState:
    """The state of a kernel that holds `node` (a reduction or a matmul) among pointwise ops."""
    if role(node) == "reduce":
        full, axes = node.inputs[0].shape, node.attrs["axes"]
        keep = tuple(1 if i in axes else d for i, d in enumerate(full))
        drop = tuple(d for i, d in enumerate(full) if i not in axes)
        return KernelState("reduction", full=full, axes=axes, keep=keep, drop=drop)
    return KernelState("matmul", matmul=node)


# (kernel kind, role of the op that would join) -> None when the kind may hold such ops
# (its shape rule in FITS then decides), else the refusal. The pass turns a pointwise
# kernel into a reduction or matmul kernel when a reduction or matmul joins it.
JOINS = {
    ("pointwise", "elementwise"): None,
    ("pointwise", "layout"): None,
    ("pointwise", "reduce"): "a pointwise kernel holds no reduction",
    ("pointwise", "matmul"): "a pointwise kernel holds no matmul",
    ("reduction", "elementwise"): None,
    ("reduction", "layout"): None,
    ("reduction", "reduce"): None,
    ("reduction", "matmul"): "a reduction kernel's prologue is pointwise; the matmul stays out",
    ("matmul", "elementwise"): None,
    ("matmul", "layout"): None,
    ("matmul", "reduce"): "a matmul kernel's epilogue is pointwise; it holds no reduction",
    ("matmul", "matmul"): "a matmul kernel holds one matmul",
}


def _fits_pointwise(state, node, users):
    return None  # any elementwise or layout op: the output shape is the iteration space


def _fits_reduction(state, node, users):
    r = role(node)
    if r == "reduce":
        if node.inputs[0].shape != state.full or node.attrs["axes"] != state.axes:
            return (f"{node.op} reduces axes {node.attrs['axes']} of "
                    f"{format_shape(node.inputs[0].shape)} but the kernel reduces axes "
                    f"{state.axes} of {format_shape(state.full)}")
    elif r == "layout" and node.op not in REDUCTION_LAYOUT_OPS:
        return f"{node.op} would reorder the axes a reduction kernel iterates"
    elif node.shape not in state.shapes:
        return (f"{node.op} iterates {node.type} but the kernel iterates "
                f"{format_shape(state.full)} reduced over axes {state.axes}")
    elif r == "layout" and node.op != "broadcast_to" and node.inputs[0].shape not in state.shapes:
        return (f"{node.op} of {node.inputs[0].type} does not map onto the kernel's "
                f"{format_shape(state.full)} reduced over axes {state.axes}")
    return _reduced_value_misused(state, node, users)


def _reduced_value_misused(state, node, users):
    """A reduced value without its kept axes broadcasts (NumPy: from the right) back onto
    the full shape along the right axes only when the reduced axes lead."""
    leading = state.axes == tuple(range(len(state.axes)))
    if node.shape != state.drop or state.drop == state.keep or leading:
        return None
    for user in users:
        if user.shape != state.drop and user.op not in ("expand_dims", "reshape"):
            return (f"{node.op} gives {node.type}, which {user.op} would broadcast onto "
                    f"{user.type} along the wrong axes")
    return None


def _swaps_last_two(node: Node) -> bool:
    return node.op == "transpose" and node.attrs["perm"] == ops.swap_last_two(node.ndim)


def _fits_matmul(state, node, users):
    r, mm = role(node), state.matmul
    if any(u in state.operands for u in users):
        return "matmul operands are kernel inputs (through at most a transpose)"
    if any(u is mm for u in users):  # `is`: == on nodes builds an eq node
        if _swaps_last_two(node) and len(users) == 1:
            return None
        return f"matmul operands are kernel inputs; {node.op} would be a prologue"
    if r == "layout" and node.inputs[0].op in SOURCE_OPS:
        return None  # moves an operand (a conv's bias to (O, 1, 1)), not the product
    if r == "layout" and node.op != "broadcast_to":
        return f"{node.op} in a matmul epilogue would move the matmul's output"
    if node.shape != mm.shape:
        return f"{node.op} iterates {node.type} but the matmul epilogue iterates {mm.type}"
    return None


# kernel kind -> its shape rule: (state, node, the node's users inside the kernel) ->
# refusal or None
FITS = {"pointwise": _fits_pointwise, "reduction": _fits_reduction, "matmul": _fits_matmul}


def _admit(state: KernelState, node: Node, users: list) -> str | None:
    """Whether `node` fits a kernel in `state` whose members include `users`; on success
    record what it pins down."""
    if role(node) is None:
        return f"{node.op} is not fusible"
    if node is state.matmul:
        return None
    reason = JOINS[state.kind, role(node)] or FITS[state.kind](state, node, users)
    if reason is None and state.kind == "matmul" and any(u is state.matmul for u in users):
        state.operands.add(node)
    return reason


def check_kernel(kind: str, body: Graph) -> str | None:
    """Why `body` is not a valid kernel of `kind` (one line), or None when it is."""
    if kind not in KINDS:
        return f"unknown kernel kind {kind!r}; kinds are {', '.join(KINDS)}"
    if len(body.outputs) != 1:
        return f"a kernel body has one output, this one has {len(body.outputs)}"
    members = [n for n in body.nodes if n.op not in SOURCE_OPS]
    if any(n.op == "param" for n in body.nodes):
        return "a kernel body holds no params; pass them as operands"
    state = KernelState()
    if kind != "pointwise":
        wanted = "reduce" if kind == "reduction" else "matmul"
        anchors = [n for n in members if role(n) == wanted]
        if not anchors or (kind == "matmul" and len(anchors) > 1):
            holds = "exactly one matmul" if kind == "matmul" else "a sum or max"
            return f"a {kind} kernel holds {holds}"
        state = state_for(anchors[0])
    users = body.users
    for node in reversed(members):  # consumers first, as the pass grows kernels
        reason = _admit(state, node, users[node])
        if reason:
            return f"{node.op}: {reason}"
    return None


def make_fused(kind: str, operands, body, loc=None, tags=()) -> Node:
    """A kernel node over `operands`. `body` is a Graph whose inputs, in its order, stand
    for the operands, or a function called with one body input per operand that returns
    the output node, e.g. make_fused("matmul", [x, W, b], lambda x, w, b: gc.relu(x @ w + b))."""
    operands = list(operands)
    if callable(body):
        inputs = [Node("input", (), {}, o.type, name=f"in{i}") for i, o in enumerate(operands)]
        body = body_graph(body(*inputs), inputs)
    problem = check_kernel(kind, body)
    if problem:
        raise ValueError(f"make_fused: not a valid {kind} kernel: {problem}")
    type = ops.infer_type("fused", [o.type for o in operands], {"kind": kind}, body)
    return Node("fused", operands, {"kind": kind}, type, loc=loc, tags=tags, body=body)


def body_graph(output: Node, params: list) -> Graph:
    """A kernel body computing `output` whose inputs are `params`, in that order (every
    one of them read: an operand the body does not read is a ShapeError)."""
    reached = Graph([output]).nodes
    ids = {id(n) for n in reached}
    unread = [k for k, p in enumerate(params) if id(p) not in ids]
    if unread:
        raise ShapeError(f"a kernel body reads every operand, but not operand {unread[0]}")
    return Graph([output], order=list(params) + [n for n in reached if n.op != "input"])


# --- the pass: grow kernels consumers first ---------------------------------------------

# Elementwise ops cheap enough to recompute inside each consumer kernel rather than store:
# no transcendental, so a duplicate costs about what the load it replaces would.
CHEAP_OPS = ops.with_trait("cheap")
MAX_RECOMPUTE_KERNELS = 4   # a cheap value is recomputed in at most this many kernels
INLINE_CONST_SIZE = 1       # consts this small are copied into bodies, not passed in


@dataclass
class Group:
    """The ops that will make one kernel, as the sweep grows it."""
    state: KernelState
    members: list            # the nodes it computes, in the order they joined

    @property
    def root(self) -> Node:
        """The kernel's output: the node it was made for, so the first member."""
        return self.members[0]


@dataclass(frozen=True)
class Refusal:
    """A producer and a consumer that touched but were not fused, and the rule why."""
    producer: Node
    consumer: Node
    reason: str


@dataclass
class FusionPlan:
    graph: Graph
    kernels: list            # Group, by id
    member_of: dict          # node -> ids of the kernels that compute it ([] : plain op)
    refusals: list           # Refusal, in the order decided


class FusionPlanner:
    """One consumers-first sweep over a graph, deciding for each op which kernels hold it."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.users = graph.users
        self.position = {node: i for i, node in enumerate(graph.nodes)}
        self.needed = set(graph.outputs) | set(graph.updates.values())
        self.kernels, self.member_of, self.refusals = [], {}, []
        self.recomputed = set()
        self.reach = Reachability(self.users, self.position)
        self._names = None
        self._transitions = {}  # (kernel, new kind and shapes) -> (members checked, refusal)

    def plan(self) -> FusionPlan:
        for node in reversed(self.graph.nodes):
            if node.op in SOURCE_OPS:
                continue
            if role(node) is None:
                self.member_of[node] = []
                for user in self.users[node]:
                    self.refuse(node, user, f"{node.op} is not fusible")
                continue
            self.place(node)
        return FusionPlan(self.graph, self.kernels, self.member_of, self.refusals)

    # -- deciding one node

    def place(self, node: Node) -> None:
        outside, groups = [], {}  # plain users; kernel -> the users it holds
        for user in self.users[node]:
            for k in self.member_of[user]:
                groups.setdefault(k, []).append(user)
            if not self.member_of[user]:
                outside.append(user)
        stored = bool(outside) or node in self.needed  # then fusing it saves nothing
        trials = {} if stored else {k: self.try_join(k, node, us) for k, us in groups.items()}
        refused = {k: reason for k, (reason, _) in trials.items() if reason}
        not_shared = self.why_not_recompute(node, len(groups)) if len(groups) > 1 else None
        if not stored and not refused and not_shared is None:
            for k, (_, state) in trials.items():
                self.join(k, node, state)
            if len(groups) > 1:
                self.recomputed.add(node)
            return
        self.materialize(node)
        if refused and not_shared is None:
            not_shared = f"the kernel of {self.name(self.kernels[next(iter(refused))].root)} " \
                         "cannot hold it"
        for user in outside:
            self.refuse(node, user, f"{user.op} is not fusible")
        for k, users in groups.items():
            reason = refused.get(k) or self.why_stored(node, k, users, outside, len(groups),
                                                       not_shared)
            for user in users:
                self.refuse(node, user, reason)

    def why_stored(self, node, k, users, outside, n_kernels, not_shared) -> str:
        """Why a producer that kernel k (holding `users` of it) could hold is stored
        instead; not_shared says why it is not in every kernel it feeds."""
        through = self.leads_back(node, users, self.kernels[k].root)
        if through is not None:
            return f"would create a cycle through {self.name(through)}"
        if node in self.needed:
            return f"{self.name(node)} is a graph output, so it is stored anyway"
        if outside:
            return (f"{self.name(node)} is also used by {self.name(outside[0])} outside "
                    "the kernel, so it is stored anyway")
        return f"{self.name(node)} is used by {n_kernels} kernels and {not_shared}"

    def why_not_recompute(self, node: Node, n_kernels: int) -> str | None:
        """Recompute only small pointwise work whose own inputs are stored anyway (so it
        does not pull their producers out of a kernel) and that feeds no recomputed work
        (so duplication never cascades)."""
        if node.op not in CHEAP_OPS:
            return f"{node.op} is not cheap to recompute"
        if n_kernels > MAX_RECOMPUTE_KERNELS:
            return f"is recomputed in at most {MAX_RECOMPUTE_KERNELS} kernels"
        if any(u in self.recomputed for u in self.users[node]):
            return "feeds recomputed work (recomputation does not cascade)"
        fusible = next((i for i in node.inputs if i.op not in SOURCE_OPS and role(i)
                        and i not in self.needed and len(self.users[i]) == 1), None)
        if fusible is not None:
            return (f"recomputing it would store {self.name(fusible)}, which now fuses "
                    "with it")
        return None

    # -- kernels

    def kernel_users(self, node, k) -> list:
        return [u for u in self.users[node] if k in self.member_of[u]]

    def try_join(self, k: int, node: Node, users: list):
        """(refusal or None, the state of kernel k with node in it); users: node's users
        in kernel k."""
        kernel = self.kernels[k]
        if kernel.state.kind == "pointwise" and role(node) in ("reduce", "matmul"):
            return self.try_transition(k, node, users)
        state = replace(kernel.state, operands=set(kernel.state.operands))  # _admit may add
        return _admit(state, node, users), state

    def try_transition(self, k: int, node: Node, users: list):
        """A pointwise kernel becomes a reduction or matmul kernel: every member so far must
        fit the new kind. Members only grow and a member's fit depends only on the new
        kind's shapes, so each member is checked once per such shape: linear overall."""
        state, members = state_for(node), self.kernels[k].members
        mm_shape = state.matmul.shape if state.matmul is not None else None
        signature = (k, state.kind, state.full, state.axes, mm_shape)
        checked, reason = self._transitions.get(signature, (0, None))
        for member in members[checked:] if reason is None else ():
            reason = _admit(state, member, self.kernel_users(member, k))
            if reason:
                reason = (f"as a {state.kind} kernel, the kernel of "
                          f"{self.name(self.kernels[k].root)} could not hold "
                          f"{self.name(member)}: {reason}")
                break
        self._transitions[signature] = (len(members), reason)
        if reason:
            return reason, None
        return _admit(state, node, users), state

    def join(self, k: int, node: Node, state: KernelState) -> None:
        self.kernels[k].state = state
        self.kernels[k].members.append(node)
        self.member_of.setdefault(node, []).append(k)

    def materialize(self, node: Node) -> None:
        state = state_for(node) if role(node) in ("reduce", "matmul") else KernelState()
        self.kernels.append(Group(state, [node]))
        self.member_of[node] = [len(self.kernels) - 1]

    # -- reporting and reachability

    def refuse(self, producer, consumer, reason) -> None:
        self.refusals.append(Refusal(producer, consumer, reason))

    def name(self, node) -> str:
        if self._names is None:
            self._names = node_names(self.graph.nodes)
        return f"%{self._names[node]}"

    def leads_back(self, node: Node, inside: list, root: Node) -> Node | None:
        """The first user of node in the graph's order, not among `inside`, from which a
        path leads to root, or None (passes/reachability.py: two searches bounded by
        topological positions, no ancestor table)."""
        return self.reach.first_leading_to(node, inside, root)


def plan_fusion(graph: Graph) -> FusionPlan:
    """Which kernels compute each op, and why touching ops were not fused."""
    return FusionPlanner(graph).plan()


# --- building the fused graph ----------------------------------------------------------

def _inline_const(node: Node) -> bool:
    return node.op == "const" and node.value.size <= INLINE_CONST_SIZE


def _build_kernel(plan: FusionPlan, k: int, new: dict) -> Node:
    """The fused node for kernel k; `new` maps stored old nodes to their new nodes."""
    kernel = plan.kernels[k]
    external = [i for m in kernel.members for i in m.inputs if k not in plan.member_of.get(i, ())]
    # Small consts are copied in, unless they are all the kernel reads (a kernel has operands).
    inline = _inline_const if not all(map(_inline_const, external)) else lambda node: False
    inside, outer = {}, {}  # old node -> its body node; body input -> outer operand
    for member in reversed(kernel.members):  # they joined consumers first
        for i in member.inputs:
            if i in inside:
                continue
            if inline(i):
                inside[i] = Node("const", (), {}, i.type, loc=i.loc, value=i.value,
                                 scope=i.scope)
            else:
                inside[i] = Node("input", (), {}, i.type, loc=i.loc)
                outer[inside[i]] = new[i]
        inside[member] = Node(member.op, [inside[i] for i in member.inputs], member.attrs,
                              member.type, name=member.name, loc=member.loc, tags=member.tags,
                              scope=member.scope)
    body = Graph([inside[kernel.root]])
    for index, node in enumerate(body.inputs):  # numbered in the order the body reads them
        node.name = f"in{index}"
    operands = [outer[node] for node in body.inputs]  # bound by position
    problem = check_kernel(kernel.state.kind, body)
    if problem:  # the sweep admits only what check_kernel accepts: this is a bug
        raise AssertionError(f"fuse built an invalid {kernel.state.kind} kernel: {problem}")
    root = kernel.root
    return Node("fused", operands, {"kind": kernel.state.kind}, root.type, name=root.name,
                loc=root.loc, tags=root.tags, scope=root.scope, body=body)


def apply_plan(plan: FusionPlan) -> Graph:
    graph, new = plan.graph, {}
    roots = {kernel.root: k for k, kernel in enumerate(plan.kernels)}
    for node in graph.nodes:
        if node in roots and len(plan.kernels[roots[node]].members) > 1:
            new[node] = _build_kernel(plan, roots[node], new)
        elif node.op in SOURCE_OPS or node in roots or not plan.member_of[node]:
            new[node] = rebuild(node, tuple(new[i] for i in node.inputs))
    return Graph([new[o] for o in graph.outputs],
                 {p: new[v] for p, v in graph.updates.items()})


def fuse(graph: Graph) -> Graph:
    """Group ops into pointwise, reduction and matmul kernels (`fused` nodes)."""
    return apply_plan(plan_fusion(graph))


def explain_fusion(graph: Graph) -> list:
    """One line per producer -> consumer pair that touched but did not fuse, with the rule
    that stopped it, naming nodes as `print(graph)` does."""
    plan, names = plan_fusion(graph), node_names(graph.nodes)
    position = {node: i for i, node in enumerate(graph.nodes)}
    refusals = sorted(plan.refusals, key=lambda r: (position[r.producer], position[r.consumer]))
    lines = dict.fromkeys(
        f"%{names[r.producer]} {r.producer.op} -> %{names[r.consumer]} {r.consumer.op}: "
        f"{r.reason}" for r in refusals)
    return list(lines)
