"""What the compiler did, shown on request.

    GRAPHC_LOGS=fusion,schedule,output_code python train.py     # to stderr
    gc.compile(loss, debug_dir="dbg")                           # every topic, to files

Topics (one row each in TOPICS):
  passes       the IR before the pipeline and after every pass
  fusion       the IR before and after the fuse pass, and why each pair was not fused
  schedule     the IR after the schedule pass, and the backend's buffer plan per shape
  output_code  the generated source per shape signature
`GRAPHC_LOGS=all` turns every topic on. With `debug_dir`, every topic is written under
debug_dir/<function>/ (00_input.ir, 01_simplify.ir, ..., fusion.txt, plan_*.txt,
source_*.txt) whatever GRAPHC_LOGS says; stderr still shows only the topics it names.
"""

from __future__ import annotations

import itertools
import os
import sys

from graphc.passes.fusion import explain_fusion

TOPICS = {
    "passes": "the IR before the pipeline and after every pass",
    "fusion": "the IR around the fuse pass and why-not-fused lines",
    "schedule": "the IR after scheduling and the buffer plan",
    "output_code": "the generated source",
}

# Which topic shows the IR after a pass, beside "passes" (which shows every pass).
PASS_TOPICS = {"fuse": "fusion", "schedule": "schedule"}

_function_ids = itertools.count()


def topics_from_env(value: str | None = None) -> frozenset:
    """The topics named in GRAPHC_LOGS (comma separated; "all" for every topic)."""
    value = os.environ.get("GRAPHC_LOGS", "") if value is None else value
    names = {name.strip() for name in value.split(",") if name.strip()}
    if "all" in names:
        return frozenset(TOPICS)
    unknown = sorted(names - set(TOPICS))
    if unknown:
        raise ValueError(f"GRAPHC_LOGS: unknown topic {unknown[0]!r}; topics are "
                         f"{', '.join(TOPICS)} or all")
    return frozenset(names)


class CompileLog:
    """Collects one compiled function's log: sends each topic to stderr if asked and to
    debug_dir files if given. Silent (and nearly free) when neither is set."""

    def __init__(self, name: str, topics: frozenset = frozenset(), debug_dir: str | None = None,
                 stream=None):
        self.name = name
        self.topics = topics
        self.dir = os.path.join(debug_dir, name) if debug_dir else None
        self.stream = stream if stream is not None else sys.stderr
        self._steps = itertools.count()
        self._previous = self._previous_text = None  # the last graph shown, and its text

    @classmethod
    def for_function(cls, outputs, debug_dir=None) -> "CompileLog":
        # A function may have no outputs, only updates (a training step's side effects).
        label = (outputs[0].name or outputs[0].op) if outputs else "updates"
        return cls(f"fn{next(_function_ids)}_{label}", topics_from_env(), debug_dir)

    @property
    def active(self) -> bool:
        return bool(self.topics) or self.dir is not None

    # --- the pass pipeline -----------------------------------------------------------

    def pipeline_start(self, graph, level: str):
        if not self.active:  # printing a graph costs as much as a pass: only when asked
            return
        self._previous, self._previous_text = graph, str(graph)
        self._emit("passes", f"input to {level}", self._previous_text,
                   f"{next(self._steps):02d}_input.ir")

    def after_pass(self, name: str, graph):
        """The PassManager's dump hook: called with each pass's result."""
        if not self.active:
            return
        text = str(graph)  # once per pass: the next pass compares against it
        before, before_text = self._previous, self._previous_text
        self._previous, self._previous_text = graph, text
        step = next(self._steps)
        topic = PASS_TOPICS.get(name)
        if topic == "fusion" and self._wants(topic):
            self._emit(topic, "before fuse", before_text, None)
            self._emit(topic, "why not fused", _why_not_fused(before), "fusion.txt")
        if topic is not None and topic in self.topics:
            self._emit(topic, f"after {name}", text, None)
        shown = "(unchanged)" if text == before_text else text
        self._emit("passes", f"after {name}", text, f"{step:02d}_{name}.ir", shown)

    # --- the backend -----------------------------------------------------------------

    def built(self, executable, dims: dict):
        """A backend built `executable` for `dims`: its buffer plan and its source."""
        if not self.active:
            return
        tag = "_".join(f"{k}{v}" for k, v in sorted(dims.items())) or "static"
        plan = executable.plan_text  # "" for a backend without a buffer plan
        if plan:
            self._emit("schedule", f"buffer plan for {dims}", plan, f"plan_{tag}.txt")
        self._emit("output_code", f"code for {dims}", executable.source, f"source_{tag}.txt")

    # --- output ----------------------------------------------------------------------

    def _wants(self, topic: str) -> bool:
        return topic in self.topics or self.dir is not None

    def _emit(self, topic: str, title: str, text: str, filename: str | None, shown=None):
        if topic in self.topics:
            shown = text if shown is None else shown
            self.stream.write(f"[graphc:{topic}] {self.name}: {title}\n{shown.rstrip()}\n")
        if self.dir is not None and filename is not None:
            os.makedirs(self.dir, exist_ok=True)
            with open(os.path.join(self.dir, filename), "w") as f:
                f.write(text.rstrip() + "\n")


def _why_not_fused(graph) -> str:
    return "\n".join(explain_fusion(graph)) or "(every producer fused with its consumers)"
