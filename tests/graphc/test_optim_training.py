"""gc.optim's training features against torch: AdamW, weight decay, gradient clipping
composed with optimizers through grads=, learning-rate schedules (alone and driving a
step), and gc.nn.init's statistics."""

import math

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler

import graphc as gc
from graphc.errors import UsageError
from tests.graphc.test_optim import _problem

SCHEDULES = gc.optim.schedules


def _torch_run(params, feeds, make_optimizer, steps, max_norm=None, make_scheduler=None):
    """The same regression trained by torch; returns the params and each step's clip
    norm."""
    leaves = [torch.tensor(p.value.copy(), requires_grad=True) for p in params]
    optimizer = make_optimizer(leaves)
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    X, Y = torch.tensor(feeds["x"]), torch.tensor(feeds["y"])
    norms = []
    for _ in range(steps):
        optimizer.zero_grad()
        W, b, V = leaves
        torch.nn.functional.mse_loss(torch.tanh(X @ W + b) @ V, Y).backward()
        if max_norm is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(leaves, max_norm)))
        optimizer.step()
        if scheduler:
            scheduler.step()
    return [leaf.detach().numpy() for leaf in leaves], norms


OPTIMIZERS = {
    "adamw": (lambda loss, ps, **kw: gc.optim.adamw(loss, ps, lr=0.05, beta1=0.8,
                                                     weight_decay=0.1, **kw),
              lambda leaves: torch.optim.AdamW(leaves, lr=0.05, betas=(0.8, 0.999),
                                               weight_decay=0.1)),
    "adam_l2": (lambda loss, ps, **kw: gc.optim.adam(loss, ps, lr=0.05, weight_decay=0.1, **kw),
                lambda leaves: torch.optim.Adam(leaves, lr=0.05, weight_decay=0.1)),
    "sgd_decay": (lambda loss, ps, **kw: gc.optim.sgd(loss, ps, lr=0.1, weight_decay=0.05, **kw),
                  lambda leaves: torch.optim.SGD(leaves, lr=0.1, weight_decay=0.05)),
    "sgd_momentum_decay": (
        lambda loss, ps, **kw: gc.optim.sgd(loss, ps, lr=0.1, momentum=0.9,
                                            weight_decay=0.05, **kw),
        lambda leaves: torch.optim.SGD(leaves, lr=0.1, momentum=0.9, weight_decay=0.05)),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_decay_updates_match_torch(name, backend):
    loss, params, feeds = _problem(np.random.default_rng(0))
    ours, theirs = OPTIMIZERS[name]
    want, _ = _torch_run(params, feeds, theirs, steps=4)
    step = backend.compile(loss, updates=ours(loss, params))
    for _ in range(4):
        step(**feeds)
    for p, w in zip(params, want):
        np.testing.assert_allclose(p.value, w, rtol=1e-10, atol=1e-12, err_msg=p.name)


@pytest.mark.parametrize("name", ["adamw", "sgd_momentum_decay"])
@pytest.mark.parametrize("max_norm", [0.05, 1e3])  # clipping every step, and never
def test_clip_grad_norm_composes_with_an_optimizer_like_torch(name, max_norm, backend):
    loss, params, feeds = _problem(np.random.default_rng(1))
    ours, theirs = OPTIMIZERS[name]
    want, norms = _torch_run(params, feeds, theirs, steps=3, max_norm=max_norm)
    clipped, norm = gc.optim.clip_grad_norm(gc.grad(loss, params), max_norm)
    step = backend.compile(norm, updates=ours(loss, params, grads=clipped))
    got = [float(step(**feeds)) for _ in range(3)]
    np.testing.assert_allclose(got, norms, rtol=1e-10)
    for p, w in zip(params, want):
        np.testing.assert_allclose(p.value, w, rtol=1e-10, atol=1e-12, err_msg=p.name)


def test_clipped_gradients_keep_their_direction():
    a, b = gc.input("a", (2,), "float64"), gc.input("b", (3,), "float64")
    (ca, cb), norm = gc.optim.clip_grad_norm([a, b], 1.0)
    out = gc.compile([ca, cb, norm])(a=np.array([3.0, 0.0]), b=np.array([0.0, 4.0, 0.0]))
    np.testing.assert_allclose(out[2], 5.0)
    np.testing.assert_allclose(np.concatenate(out[:2]), np.array([3, 0, 0, 4, 0]) / (5 + 1e-6))


def test_grads_must_fit_the_params():
    loss, params, _ = _problem(np.random.default_rng(2))
    with pytest.raises(UsageError, match="gc.optim.adamw: 2 grads for 3 params"):
        gc.optim.adamw(loss, params, grads=gc.grad(loss, params[:2]))
    with pytest.raises(UsageError, match="gradient of param 'W'"):
        gc.optim.sgd(loss, params, lr=0.1, grads=gc.grad(loss, params)[::-1])
    with pytest.raises(UsageError, match="clip_grad_norm: grads is empty"):
        gc.optim.clip_grad_norm([], 1.0)


def _torch_lrs(make_scheduler, steps, lr=0.5):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


LR_SCHEDULES = {
    "constant": (SCHEDULES.constant(0.5), lambda o: lr_scheduler.LambdaLR(o, lambda t: 1.0)),
    "step": (SCHEDULES.step(0.5, 3, gamma=0.5), lambda o: lr_scheduler.StepLR(o, 3, 0.5)),
    "cosine": (SCHEDULES.cosine(0.5, 10, min_lr=0.01),
               lambda o: lr_scheduler.CosineAnnealingLR(o, 10, eta_min=0.01)),
    "linear_warmup": (SCHEDULES.linear(0.5, 0.1, 1.0, 4),
                      lambda o: lr_scheduler.LinearLR(o, 0.1, 1.0, 4)),
    "warmup_then_cosine": (
        SCHEDULES.sequential([SCHEDULES.linear(0.5, 0.1, 1.0, 3), SCHEDULES.cosine(0.5, 8)],
                             milestones=[3]),
        lambda o: lr_scheduler.SequentialLR(o, [lr_scheduler.LinearLR(o, 0.1, 1.0, 3),
                                                lr_scheduler.CosineAnnealingLR(o, 8)], [3])),
}


@pytest.mark.parametrize("name", LR_SCHEDULES)
def test_schedules_match_torch_lr_scheduler(name, backend):
    ours, theirs = LR_SCHEDULES[name]
    t = gc.input("t", (), "float64")
    lr = backend.compile(ours(t), inputs=[t])  # constant does not read t
    got = [float(lr(t=np.float64(k))) for k in range(11)]
    np.testing.assert_allclose(got, _torch_lrs(theirs, 11), rtol=1e-12, atol=1e-15)


def test_cosine_holds_its_minimum_after_the_last_step():
    t = gc.input("t", (), "float64")
    lr = gc.compile(SCHEDULES.cosine(1.0, 4, min_lr=0.1)(t))
    assert [float(lr(t=np.float64(k))) for k in (4, 5, 100)] == pytest.approx([0.1] * 3)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_schedule_drives_an_optimizer_like_torch(optimizer, backend):
    loss, params, feeds = _problem(np.random.default_rng(3))
    ours, theirs = LR_SCHEDULES["warmup_then_cosine"]
    make = {"sgd": (lambda: gc.optim.sgd(loss, params, lr=ours, momentum=0.5),
                    lambda leaves: torch.optim.SGD(leaves, lr=0.5, momentum=0.5)),
            "adamw": (lambda: gc.optim.adamw(loss, params, lr=ours),
                      lambda leaves: torch.optim.AdamW(leaves, lr=0.5))}[optimizer]
    want, _ = _torch_run(params, feeds, make[1], steps=6, make_scheduler=theirs)
    updates = make[0]()
    assert f"{optimizer}_t" in {p.name for p in updates}
    step = backend.compile(loss, updates=updates)
    for _ in range(6):
        step(**feeds)
    for p, w in zip(params, want):
        np.testing.assert_allclose(p.value, w, rtol=1e-9, atol=1e-12, err_msg=p.name)


# --- initial values ---------------------------------------------------------------------

SHAPE = (200, 300)  # fan_in 200, fan_out 300: 60000 draws


def _within(sample, mean, std, sigmas=5):
    """The sample's mean and standard deviation are those of its law, to `sigmas`
    standard errors (the std's standard error about std / sqrt(2n))."""
    n = sample.size
    assert abs(sample.mean() - mean) < sigmas * std / math.sqrt(n)
    assert abs(sample.std() - std) < sigmas * std / math.sqrt(2 * n) * 1.5


INITS = {
    "xavier_uniform": (lambda s: gc.nn.init.xavier_uniform(SHAPE, gain=2.0, seed=s),
                       2.0 * math.sqrt(6 / 500)),
    "kaiming_uniform": (lambda s: gc.nn.init.kaiming_uniform(SHAPE, seed=s),
                        math.sqrt(2) * math.sqrt(3 / 200)),
    "he_uniform_fan_out": (lambda s: gc.nn.init.he_uniform(SHAPE, mode="fan_out", seed=s),
                           math.sqrt(2) * math.sqrt(3 / 300)),
}
NORMAL_INITS = {
    "xavier_normal": (lambda s: gc.nn.init.xavier_normal(SHAPE, seed=s), math.sqrt(2 / 500)),
    "glorot_normal_tanh": (lambda s: gc.nn.init.glorot_normal(
        SHAPE, gain=gc.nn.init.gain("tanh"), seed=s), 5 / 3 * math.sqrt(2 / 500)),
    "kaiming_normal_relu": (lambda s: gc.nn.init.kaiming_normal(
        SHAPE, nonlinearity="relu", seed=s), math.sqrt(2 / 200)),
    "kaiming_normal_leaky": (lambda s: gc.nn.init.kaiming_normal(SHAPE, a=0.2, seed=s),
                             math.sqrt(2 / 1.04) / math.sqrt(200)),
    "normal": (lambda s: gc.nn.init.normal(SHAPE, std=0.02, seed=s), 0.02),
}


@pytest.mark.parametrize("name", INITS)
def test_uniform_inits_fill_their_bounds_with_the_right_spread(name):
    draw, bound = INITS[name]
    sample = draw(0)
    assert sample.shape == SHAPE and np.abs(sample).max() <= bound
    assert np.abs(sample).max() > 0.999 * bound  # the bound, not a narrower one
    _within(sample, 0.0, bound / math.sqrt(3))
    np.testing.assert_array_equal(draw(0), sample)  # one seed, one array
    assert not np.array_equal(draw(1), sample)


@pytest.mark.parametrize("name", NORMAL_INITS)
def test_normal_inits_have_the_right_spread(name):
    draw, std = NORMAL_INITS[name]
    sample = draw(0)
    _within(sample, 0.0, std)
    np.testing.assert_array_equal(draw(0), sample)
    assert not np.array_equal(draw(7), sample)


def test_init_fans_of_a_receptive_field_and_the_gains_are_torchs():
    assert gc.nn.init.fans((3, 8, 5, 5)) == (75, 200)
    assert not gc.nn.init.zeros((2, 3)).any()
    for name in ("linear", "tanh", "relu", "selu", "sigmoid"):
        assert gc.nn.init.gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert gc.nn.init.gain("leaky_relu", 0.3) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.3))
    with pytest.raises(ValueError, match="fans need a weight of 2 or more axes"):
        gc.nn.init.xavier_uniform((5,))
    with pytest.raises(ValueError, match="unknown nonlinearity 'swish'"):
        gc.nn.init.kaiming_normal((2, 2), nonlinearity="swish")
