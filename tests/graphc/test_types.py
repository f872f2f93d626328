"""graphc/types.py: dtypes and promotion, shapes with symbolic dims, broadcasting; and the
dtype every DSL operation gives when operands of different dtypes (or Python scalars) meet."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DtypeError, ShapeError
from graphc.types import (
    TensorType, broadcast_shapes, canonical_dtype, canonical_shape, format_shape, promote)


@pytest.mark.parametrize("spelling,name", [
    ("float32", "float32"), ("f32", "float32"), (np.float64, "float64"), ("i64", "int64"),
    (np.dtype("int32"), "int32"), (bool, "bool"), ("bool", "bool"), (float, "float64")])
def test_canonical_dtype_accepts_the_usual_spellings(spelling, name):
    assert canonical_dtype(spelling) == name


@pytest.mark.parametrize("bad", ["float16", np.complex64, "nonsense", np.uint8])
def test_canonical_dtype_rejects_what_graphc_does_not_have(bad):
    with pytest.raises(DtypeError, match="float32"):
        canonical_dtype(bad)


@pytest.mark.parametrize("dtypes,expected", [
    (("float32", "int64"), "float32"),     # a float keeps its precision beside ints
    (("int64", "float32"), "float32"),
    (("float32", "int32", "bool"), "float32"),
    (("float32", "float64"), "float64"),
    (("int32", "int64"), "int64"),
    (("bool", "int32"), "int32"),
    (("bool", "bool"), "bool"),
    (("float64", "int64"), "float64"),
])
def test_promote(dtypes, expected):
    assert promote(*dtypes) == expected


def test_promote_differs_from_numpy_only_for_float32_beside_ints():
    assert np.result_type(np.float32, np.int64) == np.float64
    assert promote("float32", "int64") == "float32"


@pytest.mark.parametrize("tensor_dtype,scalar,expected", [
    ("float32", 2, "float32"), ("float32", 2.5, "float32"), ("float64", 2, "float64"),
    ("float64", np.float32(2.5), "float64"), ("int32", 3, "int32"), ("int64", 3, "int64"),
    ("int32", 2.5, "float32"), ("float32", True, "float32")])
def test_python_scalars_take_the_tensor_dtype(tensor_dtype, scalar, expected):
    x = gc.input("x", (2,), tensor_dtype)
    assert (x + scalar).dtype == expected
    assert (scalar * x).dtype == expected
    assert gc.maximum(x, scalar).dtype == expected


def test_numpy_arrays_beside_a_tensor_take_its_float_dtype():
    x = gc.input("x", (2,), "float32")
    assert (x + np.ones(2)).dtype == "float32"          # a float64 array does not widen
    assert (np.ones(2) - x).dtype == "float32"
    assert (x * np.arange(2)).dtype == "float32"


def test_tensors_of_different_dtypes_promote():
    f32, f64 = gc.input("a", (2,)), gc.input("b", (2,), "float64")
    i32, i64 = gc.input("c", (2,), "int32"), gc.input("d", (2,), "int64")
    assert (f32 + f64).dtype == "float64"
    assert (f32 * i64).dtype == "float32"
    assert (i32 - i64).dtype == "int64"
    assert (f32 > i64).dtype == "bool"
    assert gc.where(f32 > 0, i32, f64).dtype == "float64"


def test_sources_default_to_float32():
    assert gc.input("x", (2,)).dtype == "float32"
    assert gc.param("W", np.zeros((2, 2), np.float64)).dtype == "float32"
    assert gc.param("V", np.zeros(2), dtype="float64").dtype == "float64"
    assert gc.param("n", np.arange(3)).dtype == "float32"  # weights written as ints
    assert gc.param("k", np.arange(3), dtype="int64").dtype == "int64"
    assert gc.const(1.5).dtype == "float32"
    assert gc.const(3).dtype == "int64"
    assert gc.const([True, False]).dtype == "bool"
    assert gc.const(3, dtype="float64").dtype == "float64"


@pytest.mark.parametrize("shape,expected", [
    ((2, "batch"), (2, "batch")), ([3], (3,)), (4, (4,)), ("n", ("n",)), ((), ()),
    ((np.int64(2), 3), (2, 3)), ((0, 1), (0, 1))])
def test_canonical_shape(shape, expected):
    result = canonical_shape(shape)
    assert result == expected and all(type(d) in (int, str) for d in result)


def test_none_makes_a_fresh_dim_each_time():
    a, b = canonical_shape((None, None))
    assert isinstance(a, str) and isinstance(b, str) and a != b
    assert canonical_shape(None) != canonical_shape(None)


@pytest.mark.parametrize("bad", [(-1,), (2.5,), (True,), ("not a name",), ("1x",)])
def test_canonical_shape_rejects_bad_dims(bad):
    with pytest.raises(ShapeError):
        canonical_shape(bad)


@pytest.mark.parametrize("shapes,expected", [
    (((2, 3), (3,)), (2, 3)),
    (((4, 1, 3), (2, 1)), (4, 2, 3)),
    (((), (5,)), (5,)),
    ((("b", 3), (1, 3)), ("b", 3)),
    ((("b", 1), (1, "c")), ("b", "c")),
    ((("b", 3), ("b", 1), (3,)), ("b", 3)),
    (((2, 3), (4,)), None),
    ((("b",), ("c",)), None),          # two different symbols
    ((("b",), (3,)), None),            # a symbol meets only itself or 1
])
def test_broadcast_shapes(shapes, expected):
    assert broadcast_shapes(*shapes) == expected
    if expected is not None and all(isinstance(d, int) for s in shapes for d in s):
        assert np.broadcast_shapes(*shapes) == expected


def test_tensor_type():
    t = TensorType(("batch", 3, 4), "float64")
    assert t.ndim == 3 and not t.is_static and TensorType((2,)).is_static
    assert t.size({"batch": 5}) == 60 and t.concrete_shape({"batch": 5}) == (5, 3, 4)
    assert t.nbytes({"batch": 5}) == 480
    assert str(t) == "f64[batch,3,4]" and str(TensorType(())) == "f32[]"
    assert t == TensorType(("batch", 3, 4), "float64") and hash(t) == hash(TensorType(
        ("batch", 3, 4), "float64"))
    assert TensorType((), "int64").size() == 1
    with pytest.raises(ShapeError, match="batch"):
        t.size()


def test_format_shape():
    assert format_shape((2, "b")) == "(2, b)"
    assert format_shape((3,)) == "(3,)"
    assert format_shape(()) == "()"


def test_a_python_int_too_big_for_the_tensors_int_dtype_is_refused_not_wrapped():
    x = gc.input("x", (2,), "int32")
    with pytest.raises(DtypeError, match="1099511627776 do not fit in int32") as info:
        x + 2**40
    assert "test_types.py:" in str(info.value)
    assert (x + (2**31 - 1)).dtype == "int32"
