"""Learning-rate schedules (gc.optim.schedules), computed in the graph from a step count.

A schedule is a function from the step count t (a scalar node: the number of steps
taken before this one, 0 at the first) to the learning rate (a scalar node). Give one
as an optimizer's `lr`; the optimizer keeps t in a param and advances it each step:

    lr = gc.optim.schedules.sequential(
        [gc.optim.schedules.linear(3e-4, 0.01, 1.0, 100),    # warmup over 100 steps
         gc.optim.schedules.cosine(3e-4, 900)], milestones=[100])
    updates = gc.optim.adamw(loss, params, lr=lr)

The formulas are torch.optim.lr_scheduler's closed forms (StepLR, CosineAnnealingLR,
LinearLR, SequentialLR, ConstantLR without a factor), for the lr the k-th optimizer
step uses, so the step counts agree with torch's scheduler.step() after each step.
"""

from __future__ import annotations

import math

from graphc import dsl


def constant(lr: float):
    """lr at every step."""
    return lambda t: dsl.const(lr, t.dtype)


def step(lr: float, step_size: int, gamma=0.1):
    """lr * gamma^floor(t / step_size) (StepLR)."""
    def schedule(t):
        # t >= 0 counts steps, so truncation to an integer is floor.
        stage = dsl.cast(dsl.cast(t / step_size, "int64"), t.dtype)
        return lr * dsl.const(gamma, t.dtype) ** stage
    return schedule


def cosine(lr: float, total_steps: int, min_lr=0.0):
    """min_lr + (lr - min_lr) (1 + cos(pi t / total_steps)) / 2 for t <= total_steps
    (CosineAnnealingLR's closed form), then min_lr (where torch's would rise again)."""
    def schedule(t):
        progress = dsl.minimum(t, float(total_steps)) / total_steps
        return min_lr + (lr - min_lr) * (1 + dsl.cos(math.pi * progress)) / 2
    return schedule


def linear(lr: float, start_factor=1.0 / 3, end_factor=1.0, total_steps=5):
    """lr times a factor going linearly from start_factor to end_factor over
    total_steps steps, then end_factor (LinearLR: a warmup when start_factor < 1)."""
    def schedule(t):
        progress = dsl.minimum(t, float(total_steps)) / total_steps
        return lr * (start_factor + (end_factor - start_factor) * progress)
    return schedule


def sequential(schedules: list, milestones: list):
    """schedules[0] until step milestones[0], then schedules[1] counting from 0 again,
    and so on (SequentialLR): warmup then cosine is sequential([linear, cosine], [w])."""
    if len(milestones) != len(schedules) - 1 or list(milestones) != sorted(milestones):
        raise ValueError(f"gc.optim.schedules.sequential: {len(schedules)} schedules need "
                         f"{len(schedules) - 1} increasing milestones, got {milestones}")

    def schedule(t):
        lr = schedules[0](t)
        for start, later in zip(milestones, schedules[1:]):
            lr = dsl.where(t >= start, later(dsl.maximum(t - start, 0.0)), lr)
        return lr
    return schedule
