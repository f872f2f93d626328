"""Tensor types: a shape of ints and symbolic dims, and a dtype.

A symbolic dim is a name such as "batch". Two symbolic dims are the same dim exactly
when their names are equal; a size is bound to each name when a compiled function is
called. Broadcasting follows NumPy, with one rule added for symbols: a symbol meets
only itself or 1, since a symbol beside a different fixed size is almost always a bug.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Union

import numpy as np

from graphc.errors import DtypeError, ShapeError

Dim = Union[int, str]

# name -> (short text form, numpy dtype). The short form is what the text IR prints.
DTYPES = {
    "float32": ("f32", np.dtype(np.float32)),
    "float64": ("f64", np.dtype(np.float64)),
    "int32": ("i32", np.dtype(np.int32)),
    "int64": ("i64", np.dtype(np.int64)),
    "bool": ("bool", np.dtype(np.bool_)),
}
SHORT_TO_DTYPE = {short: name for name, (short, _) in DTYPES.items()}
FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int32", "int64")
# Promotion order for mixed operands, lowest first (NumPy's for these five).
_RANK = {"bool": 0, "int32": 1, "int64": 2, "float32": 3, "float64": 4}

_fresh_dims = itertools.count()


def canonical_dtype(dtype) -> str:
    """Accept "float32", "f32", np.float32, np.dtype(...) and return the graphc name."""
    if isinstance(dtype, str) and dtype in SHORT_TO_DTYPE:
        return SHORT_TO_DTYPE[dtype]
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise DtypeError(f"unknown dtype {dtype!r}; graphc has {', '.join(DTYPES)}") from None
    if name not in DTYPES:
        raise DtypeError(f"dtype {name} is not supported; graphc has {', '.join(DTYPES)}")
    return name


def numpy_dtype(dtype: str) -> np.dtype:
    return DTYPES[dtype][1]


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def to_dtype(value, dtype: str, what: str, error=DtypeError, copy=False) -> np.ndarray:
    """`value` as a C-contiguous array of `dtype`, converted by the one rule for data a
    user hands graphc (feeds, param values): numeric data only; casts of the same kind
    (float64 -> float32, as NumPy's 'same_kind'), never one that loses information
    (float -> int, int -> bool); ints into a narrower int, and finite floats into a
    narrower float, only where every value fits (inf and nan stay values). A torch tensor
    is read as its values, even one that tracks gradients or lives on a GPU.
    `what` names the value in the `error` raised; `copy` returns an array of its own."""
    try:
        array = np.asarray(host_data(value))
    except (ValueError, TypeError, RuntimeError) as e:  # ragged lists, bfloat16 tensors
        raise error(f"{what}: the value is not an array: {e}") from None
    target = numpy_dtype(dtype)
    if array.dtype.kind not in "biuf":
        raise error(f"{what} expects {dtype}, got {array.dtype} values")
    if not np.can_cast(array.dtype, target, "same_kind"):
        raise error(f"{what} expects {dtype}; casting {array.dtype} values to it would lose "
                    f"information")
    # int64 -> int32 is safe only in range; an int dtype that always fits needs no scan.
    if (array.dtype.kind in "iu" and target.kind == "i" and array.size
            and not np.can_cast(array.dtype, target, "safe")):
        low, high = np.iinfo(target).min, np.iinfo(target).max
        if array.min() < low or array.max() > high:
            raise error(f"{what} expects {dtype}; values from {array.min()} to "
                        f"{array.max()} do not fit in it")
    with np.errstate(over="ignore"):  # a float too large for the target: refused below
        # (np.ascontiguousarray would make a 0-d array 1-d)
        converted = (np.array if copy else np.asarray)(array, dtype=target, order="C")
    if array.dtype.kind == "f" and target.itemsize < array.dtype.itemsize:
        _check_no_overflow(array, converted, what, dtype, error)
    return converted


def host_data(value):
    """A tensor of another framework as data NumPy reads: a torch tensor's values as an
    array, detached from its autograd graph and moved to the CPU (np.asarray refuses a
    tensor that requires grad, or one on a GPU). Recognized by its type's module, so
    graphc never imports torch for it."""
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def _check_no_overflow(array, converted, what, dtype, error):
    """A finite float beyond the narrower float's range would silently become inf."""
    overflowed = np.isinf(converted)
    if overflowed.any():
        overflowed &= np.isfinite(array)  # an inf in the data converts to inf: a value
        if overflowed.any():
            largest, limit = np.abs(array[overflowed]).max(), np.finfo(converted.dtype).max
            raise error(f"{what} expects {dtype}; a finite value of magnitude {largest:.9g} "
                        f"does not fit in it (its largest is {limit:.9g})")


def promote(*dtypes: str) -> str:
    """The dtype of a result computed from operands of these dtypes."""
    # Unlike NumPy, a float operand keeps its precision beside integers (float32 * int64
    # labels stays float32), as in PyTorch: ints here are labels and counts, not data.
    floats = [d for d in dtypes if is_float(d)]
    return max(floats or dtypes, key=_RANK.__getitem__)


def fresh_dim() -> str:
    """A new symbolic dim that equals no other (what `None` in a shape means)."""
    return f"_d{next(_fresh_dims)}"


def canonical_shape(shape) -> tuple:
    if isinstance(shape, (int, str)) or shape is None:
        shape = (shape,)
    dims = []
    for d in shape:
        if d is None:
            dims.append(fresh_dim())
        elif isinstance(d, str):
            if not d.isidentifier():
                raise ShapeError(f"symbolic dim {d!r} must be an identifier")
            dims.append(d)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            dims.append(int(d))
        else:
            raise ShapeError(f"bad dim {d!r} in shape {shape!r}: use ints >= 0, names or None")
    return tuple(dims)


@dataclass(frozen=True)
class TensorType:
    shape: tuple
    dtype: str = "float32"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def size(self, dims: dict | None = None) -> int:
        """Number of elements, with symbolic dims looked up in `dims`."""
        return int(np.prod([resolve_dim(d, dims) for d in self.shape], dtype=np.int64))

    def concrete_shape(self, dims: dict | None = None) -> tuple:
        return tuple(resolve_dim(d, dims) for d in self.shape)

    def nbytes(self, dims: dict | None = None) -> int:
        return self.size(dims) * numpy_dtype(self.dtype).itemsize

    def __str__(self) -> str:
        return f"{DTYPES[self.dtype][0]}[{','.join(str(d) for d in self.shape)}]"


def resolve_dim(d: Dim, dims: dict | None) -> int:
    if isinstance(d, int):
        return d
    if dims is None or d not in dims:
        raise ShapeError(f"symbolic dim {d!r} has no size bound")
    return dims[d]


def broadcast_dims(a: Dim, b: Dim) -> Dim | None:
    """The broadcast of two dims, or None when they do not broadcast."""
    if a == b:
        return a
    if a == 1:
        return b
    if b == 1:
        return a
    return None


def broadcast_shapes(*shapes: tuple) -> tuple | None:
    """NumPy broadcasting with symbolic dims; None when the shapes do not broadcast."""
    ndim = max((len(s) for s in shapes), default=0)
    result = []
    for axis in range(ndim):
        dim: Dim = 1
        for s in shapes:
            k = axis - (ndim - len(s))
            if k < 0:
                continue
            dim = broadcast_dims(dim, s[k])
            if dim is None:
                return None
        result.append(dim)
    return tuple(result)


def format_shape(shape: tuple) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
