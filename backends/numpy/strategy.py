"""How the numpy backend runs each kernel: THE table, first fitting row wins.

    collective         a call of the executable's Collectives (backends/collectives.py)
    C loops            one call of a compiled loop nest instead of a NumPy call a step
    gemm + C epilogue  the product by BLAS into the output, then one C pass over it
    chunked ufuncs     NumPy calls on cache-sized chunks of rows
    ufuncs             NumPy calls with out= into preallocated buffers

Each row has rules of three sorts, tried in this order:
- `applies`: whether the row is for this kernel at all (a C compiler works, the kernel's
  kind); a refusal here is not worth a comment in the source;
- `worth`: profitability, apart from capability (NumPy's SIMD transcendental math beats
  libm's on large arrays, so such kernels stay NumPy);
- `plan`: capability: it makes the row's plan or raises Unsupported, whose one-line
  reason is the lowering's or the C renderer's own.
The refusals of the rows before the chosen one are the kernel's `reason` (KernelInfo),
and those of C rows past `applies` are comments in f.source: `# (NumPy, not C: ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from graphc import ops
from graphc.backends.lower.loops import Unsupported
from graphc.backends.lower import index as ix
from graphc.backends.lower.kernel import Runtime, one_element_const
from graphc.ir import topological_order

from . import c
from .chunks import THREADS, chunking
from .gemm import product_end
from .ufuncs import BodyWriter

# Kernels of at most this many elements are C even with exp, log, tanh in them: below it
# one C call beats a NumPy call a step, above it NumPy's SIMD loops beat libm's scalar
# calls (measured on the C loops before the lowering; theirs are the same scalar calls).
C_TRANSCENDENTAL_ELEMENTS = 65536


@dataclass(frozen=True)
class Tools:
    """What the rows may use: the namespace, the options, BLAS's gemm (or None) and
    the library of C kernels (None where C is off or no compiler works)."""
    namespace: object
    options: object
    gemm: object
    library: c.Library | None
    # the transcendental rule's outcome for one variant of a kernel the build writes
    # twice, choosing at each call (math_switch); None: the rule decides here
    large: bool | None = None


@dataclass(frozen=True)
class Strategy:
    name: str
    why: str                    # its one-line reason
    uses_c: bool
    applies: tuple = ()         # (job, tools) -> a refusal or None, not shown
    worth: tuple = ()           # (job, tools) -> a refusal or None, shown
    plan: Callable = lambda job, tools: None     # -> its plan; raises Unsupported
    render: Callable = None     # (job, plan, tools) -> [(statement, node)]


@dataclass(frozen=True)
class Choice:
    strategy: Strategy
    plan: object
    refusals: tuple             # (strategy name, reason, shown) of the rows before


def choose(job, tools: Tools) -> Choice:
    """The first row of STRATEGIES that takes the kernel, with the refusals before it."""
    refusals = []
    for row in STRATEGIES:
        reason, shown = _refusal(row, job, tools)
        if reason is None:
            try:
                return Choice(row, row.plan(job, tools), tuple(refusals))
            except Unsupported as why:
                reason, shown = str(why), row.uses_c
        refusals.append((row.name, reason, shown))
    raise AssertionError("the last row takes every kernel")


def _refusal(row: Strategy, job, tools: Tools) -> tuple:
    for rules, shown in ((row.applies, False), (row.worth, row.uses_c)):
        for rule in rules:
            reason = rule(job, tools)
            if reason is not None:
                return reason, shown
    return None, False


# --- rules ---------------------------------------------------------------------------

def _collective(job, tools):
    return None if ops.has(job.node.op, "collective") else "not a collective"


def _c_works(job, tools):
    return None if tools.library is not None else "C is off or no C compiler works here"


def _not_matmul(job, tools):
    return "a matmul kernel: its product is BLAS's" if job.kernel.kind == "matmul" else None


def _fused_matmul(job, tools):
    if job.kernel.kind != "matmul" or job.node.op != "fused":
        return "not a fused matmul kernel"
    return None


def _numpy_math_wins(job, tools):
    slow = sorted({s.op for s in job.kernel.steps if ops.has(s.op, "transcendental")})
    if not slow:
        return None
    elements = job.elements()
    if tools.large is None and elements > C_TRANSCENDENTAL_ELEMENTS:
        return f"NumPy's SIMD {', '.join(slow)} beat libm on {elements} elements"
    if tools.large:
        return (f"NumPy's SIMD {', '.join(slow)} beat libm on more than "
                f"{C_TRANSCENDENTAL_ELEMENTS} elements")
    return None


def math_switch(job) -> str | None:
    """Where the transcendental rule's outcome depends on a kernel's symbolic sizes:
    the condition, as source over them, under which NumPy's SIMD math wins (the build
    writes the kernel both ways and chooses at each call, on the call's sizes); None
    where one outcome holds at every binding."""
    if not any(ops.has(s.op, "transcendental") for s in job.kernel.steps):
        return None
    counts = {ix.product(job.shapes[s]) for s in job.kernel.steps + [job.kernel.result]}
    if any(count > C_TRANSCENDENTAL_ELEMENTS for count, _ in counts):
        return None  # more elements than that at every binding: NumPy's always
    symbolic = sorted((count, names) for count, names in counts if names)
    if not symbolic:
        return None
    return " or ".join(f"{ix.size_source((count,) + names)} > {C_TRANSCENDENTAL_ELEMENTS}"
                       for count, names in symbolic)


def sized_choice(job, choice: Choice) -> str:
    """A note for the reason of a NumPy kernel whose chunking depended on sizes that
    are symbolic: decided once for every binding, at their estimate; else ""."""
    pointwise = job.node.op == "fused" and job.kernel.kind == "pointwise"
    if pointwise and not choice.strategy.uses_c and job.symbolic_size():
        return ("; chunked or not once for every binding, with the symbolic sizes at "
                "their estimate (64 each)")
    return ""


def _chunks(job, tools):
    return chunking(job.node, job.dims, tools.options.chunk_elements,
                    tools.options.threads or THREADS)


def _large_pointwise(job, tools):
    if _chunks(job, tools) is None:
        return "not a large pointwise kernel of elementwise ops"
    return None


def _reads_own_output_elsewhere(job, tools):
    if job.overwrites_elsewhere:
        return "it writes over an operand that it reads in another layout"
    return None


# --- plans ---------------------------------------------------------------------------

def _plan_loops(job, tools):
    return _within_a_unit(c.loops(job, name=tools.library.next_name()), tools)


def _within_a_unit(call, tools):
    """Capability: a C function longer than a compilation unit would take the compiler
    minutes on its own (ccompile.py bounds a unit's lines, not a function's)."""
    lines, limit = call.function.source.count("\n") + 1, tools.options.cc.unit_lines
    if lines > limit:
        raise Unsupported(f"its C function has {lines} lines, more than a compilation "
                          f"unit's {limit} (option cc)")
    return call


@dataclass(frozen=True)
class Epilogue:
    product: list               # the steps BLAS (or np.matmul) computes, into the output
    end: object                 # the last of them
    call: c.CCall               # the C pass over the output for the rest


def _product_end(job, tools):
    """The last step of a matmul kernel that BLAS (or np.matmul) computes (gemm.py)."""
    kernel, leaves = job.kernel, job.leaves
    known = {p: o.known for p, o in leaves.items() if o.known is not None}

    def number_of(value):
        number = known.get(value, one_element_const(value))
        return None if number is None or isinstance(number, Runtime) else number.item()

    return product_end(kernel.steps, kernel.result, number_of,
                       lambda v: v in leaves and leaves[v].in_output, tools.gemm is not None)


def _has_epilogue(job, tools):
    """A matmul kernel with one matmul and steps after its product, which fits the
    output (it is stored there before the C pass reads it)."""
    end, result = _product_end(job, tools), job.kernel.result
    if end is None:
        return "not exactly one matmul"
    if end is result:
        return "nothing after the product for C to do"
    if job.shapes[end] != job.shape or end.dtype != result.dtype:
        return "the product does not fit the output"
    return None


def _plan_epilogue(job, tools):
    end = _product_end(job, tools)
    call = _within_a_unit(c.loops(job, product_of=end, name=tools.library.next_name()), tools)
    cone = set(topological_order([end]))
    return Epilogue([s for s in job.kernel.steps if s in cone], end, call)


# --- rendering -----------------------------------------------------------------------

def _render_loops(job, call, tools):
    tools.library.add(call)
    done = ", ".join(s.op for s in job.kernel.steps)
    return [(f"{c.call_line(call, job, tools.namespace)}  # C: {done}", job.node)]


def _render_epilogue(job, plan, tools):
    writer = BodyWriter(tools.namespace, job, None, gemm=tools.gemm is not None)
    lines = writer.write(plan.product, plan.end)
    tools.library.add(plan.call)
    product = set(plan.product)
    rest = ", ".join(s.op for s in job.kernel.steps if s not in product)
    return lines + [(f"{c.call_line(plan.call, job, tools.namespace)}  # C: {rest}", job.node)]


def _render_ufuncs(job, chunk, tools):
    writer = BodyWriter(tools.namespace, job, chunk, gemm=tools.gemm is not None)
    return writer.write(job.kernel.steps, job.kernel.result)


STRATEGIES = (
    Strategy("collective", "a call of the executable's Collectives: torch.distributed on "
             "the buffers' own memory", uses_c=False, applies=(_collective,),
             render=_render_ufuncs),
    Strategy("C loops", "one call of a compiled loop nest instead of a NumPy call a step",
             uses_c=True, applies=(_c_works, _not_matmul), worth=(_numpy_math_wins,),
             plan=_plan_loops, render=_render_loops),
    Strategy("gemm + C epilogue", "the product by BLAS (or np.matmul) into the output, "
             "then the rest in one C pass over it", uses_c=True,
             applies=(_c_works, _fused_matmul, _has_epilogue), worth=(_numpy_math_wins,),
             plan=_plan_epilogue, render=_render_epilogue),
    Strategy("chunked ufuncs", "NumPy calls on cache-sized chunks of rows: a chunk's "
             "temporaries stay in cache", uses_c=False,
             applies=(_large_pointwise, _reads_own_output_elsewhere), plan=_chunks,
             render=_render_ufuncs),
    Strategy("ufuncs", "NumPy calls with out= into preallocated buffers", uses_c=False,
             render=_render_ufuncs),
)
