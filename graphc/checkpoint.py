"""gc.save / gc.load: param values (weights and optimizer state) in one .npz file.

    gc.save("model.npz", params)     # params: param nodes (W1, b1, W1_m, adam_t, ...)
    gc.load("model.npz", params)     # the same params, in this or a fresh process

The file holds one array per param, under the param's name (gc.compile already refuses
two params of one name in a model, and gc.optim names its state after its param), and
its dtype and shape as the array's own. `load` checks everything before it assigns
anything: every given param is in the file, the file holds no other, and each array has
its param's shape and dtype; a mismatch is a GraphcError naming the param and both
types. So a load that fails changes no param. The arrays are read with pickling off
(allow_pickle=False): a file holds numbers only.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from graphc.arguments import describe
from graphc.errors import GraphcError, UsageError
from graphc.node import Node
from graphc.types import format_shape, numpy_dtype


def save(path, params) -> None:
    """Writes the params' current values to `path` (a .npz; the name is kept as given,
    and written whole to a temporary file first, so an interrupted save leaves any older
    file at `path` as it was)."""
    params = _checked(params, "gc.save")
    arrays = {p.name: p.value for p in params}
    temporary = f"{os.fspath(path)}.tmp-{os.getpid()}"
    try:
        with open(temporary, "wb") as f:
            np.savez(f, **arrays)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def load(path, params) -> None:
    """Assigns each param its value from `path`, all checked first (see the module)."""
    assign(_checked(params, "gc.load"), read(path), path)


def assign(params: list, arrays: dict, path) -> None:
    """Gives each param its array of `arrays` ({name: array} read from `path`), once
    every check has passed (see the module)."""
    given = {p.name for p in params}
    missing = [p.name for p in params if p.name not in arrays]
    extra = sorted(set(arrays) - given)
    if missing or extra:
        raise GraphcError(f"gc.load: {path} " + "; ".join(
            ([f"holds no value for param {missing[0]!r}"] if missing else [])
            + ([f"holds values for params not given: {', '.join(extra)}"] if extra else [])))
    for p in params:
        check_fits(p, arrays[p.name], path)
    for p in params:  # every check passed: now assign (each a copy of its own)
        p.value = arrays[p.name]


def read(path) -> dict:
    """{name: array} of a file gc.save wrote; a file that is not one is a GraphcError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise GraphcError(f"gc.load: no file {path}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise GraphcError(f"gc.load: {path} is not a file of param values written by gc.save "
                          f"(damaged or truncated?): {e}") from None


def check_fits(param: Node, array: np.ndarray, path) -> None:
    """Raises, naming the param and both types, unless `array` is exactly its type."""
    shape, dtype = param.type.concrete_shape(), numpy_dtype(param.dtype)
    if array.shape != shape or array.dtype != dtype:
        raise GraphcError(f"gc.load: param {param.name!r} has shape {format_shape(shape)} "
                          f"and dtype {dtype}, but {path} holds shape "
                          f"{format_shape(array.shape)} and dtype {array.dtype} for it "
                          f"(param made at {param.loc}); nothing was loaded")


def _checked(params, what: str) -> list:
    if isinstance(params, Node):
        params = [params]
    params = list(params)
    seen = {}
    for p in params:
        if not (isinstance(p, Node) and p.op == "param"):
            raise UsageError(f"{what}: params are param nodes (gc.param), got {describe(p)}")
        if p.name is None:
            raise UsageError(f"{what}: param {p!r} (made at {p.loc}) has no name, and a "
                             "value is saved under its param's name")
        other = seen.setdefault(p.name, p)
        if other is not p:
            raise UsageError(f"{what}: two different params are named {p.name!r} (made at "
                             f"{other.loc} and {p.loc}): a param's value is saved under its "
                             "name")
    return params
