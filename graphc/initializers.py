"""Initial values for params (gc.nn.init): NumPy arrays drawn from a seed, for gc.param.

    W = gc.param("W", gc.nn.init.kaiming_uniform((784, 128), seed=0))

Each draws from np.random.default_rng(seed), so one seed gives one array. The formulas
are torch.nn.init's, with graphc's weight layout: a dense weight is (n_in, n_out), as
x @ W reads it (torch's Linear weight is its transpose), so fan_in = shape[0] and
fan_out = shape[1], each times the product of any further axes (a receptive field).
The gain of a nonlinearity is torch's calculate_gain (GAINS).
"""

from __future__ import annotations

import math

import numpy as np

# nonlinearity -> its gain as a function of leaky_relu's negative slope `a`
GAINS = {
    "linear": lambda a: 1.0, "sigmoid": lambda a: 1.0, "tanh": lambda a: 5.0 / 3,
    "relu": lambda a: math.sqrt(2.0), "leaky_relu": lambda a: math.sqrt(2.0 / (1 + a * a)),
    "selu": lambda a: 0.75,
}


def gain(nonlinearity: str, a: float = 0.0) -> float:
    """The standard deviation factor that keeps activations' variance through a layer."""
    if nonlinearity not in GAINS:
        raise ValueError(f"gc.nn.init: unknown nonlinearity {nonlinearity!r}; known: "
                         f"{', '.join(GAINS)}")
    return GAINS[nonlinearity](a)


def fans(shape) -> tuple:
    """(fan_in, fan_out) of a weight of `shape` = (n_in, n_out, *receptive field)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"gc.nn.init: fans need a weight of 2 or more axes (n_in, n_out, "
                         f"...), got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[0] * receptive, shape[1] * receptive


def _fan(shape, mode: str) -> int:
    fan_in, fan_out = fans(shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"gc.nn.init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def uniform(shape, low=0.0, high=1.0, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, tuple(shape))


def normal(shape, mean=0.0, std=1.0, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, std, tuple(shape))


def zeros(shape) -> np.ndarray:
    return np.zeros(tuple(shape))


def ones(shape) -> np.ndarray:
    return np.ones(tuple(shape))


def xavier_uniform(shape, gain=1.0, seed=0) -> np.ndarray:
    """U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio)."""
    bound = gain * math.sqrt(6.0 / sum(fans(shape)))
    return uniform(shape, -bound, bound, seed)


def xavier_normal(shape, gain=1.0, seed=0) -> np.ndarray:
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    return normal(shape, 0.0, gain * math.sqrt(2.0 / sum(fans(shape))), seed)


def kaiming_uniform(shape, a=0.0, mode="fan_in", nonlinearity="leaky_relu",
                    seed=0) -> np.ndarray:
    """U(-b, b), b = gain * sqrt(3 / fan) (He et al.); torch's defaults (a leaky_relu of
    slope 0, i.e. relu's gain sqrt(2), over fan_in)."""
    bound = gain(nonlinearity, a) * math.sqrt(3.0 / _fan(shape, mode))
    return uniform(shape, -bound, bound, seed)


def kaiming_normal(shape, a=0.0, mode="fan_in", nonlinearity="leaky_relu",
                   seed=0) -> np.ndarray:
    """N(0, std^2), std = gain / sqrt(fan)."""
    return normal(shape, 0.0, gain(nonlinearity, a) / math.sqrt(_fan(shape, mode)), seed)


# The other names these go by.
glorot_uniform, glorot_normal = xavier_uniform, xavier_normal
he_uniform, he_normal = kaiming_uniform, kaiming_normal
