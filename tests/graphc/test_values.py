"""What params and consts hold: a param's value is checked and copied when assigned (the
param owns a C-contiguous, writable array of its exact type, so training never writes an
array the user handed in), and every const is C-contiguous, whichever pass made it."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DtypeError, ShapeError


# --- assigning a param's value -----------------------------------------------------------

def test_a_value_of_the_wrong_shape_is_refused_naming_the_param_and_both_shapes():
    W = gc.param("W", np.zeros((2, 3)))
    with pytest.raises(ShapeError, match=r"param 'W' has shape \(2, 3\); a value of shape "
                                         r"\(3, 2\) cannot be assigned"):
        W.value = np.ones((3, 2))
    with pytest.raises(ShapeError, match=r"param 'W' .* shape \(\)"):
        W.value = 1.0  # no broadcasting: the value replaces the param's array
    np.testing.assert_array_equal(W.value, np.zeros((2, 3)))  # left as it was


@pytest.mark.parametrize("value", ["abc", [[1.0, 2.0], [3.0]], None, {"a": 1}, 1 + 2j],
                         ids=["string", "ragged", "None", "dict", "complex"])
def test_a_value_that_is_not_numeric_data_is_refused_naming_the_param(value):
    b = gc.param("b", np.zeros(2))
    with pytest.raises(DtypeError, match="param 'b'"):
        b.value = value


@pytest.mark.parametrize("dtype, value, given", [
    ("int32", np.array([1.5, 2.0]), "float64"),        # float -> int
    ("bool", np.array([0, 1]), "int64"),               # int -> bool
    ("int64", np.array([1.0, 2.0], np.float32), "float32"),
])
def test_a_cast_that_loses_information_is_refused_naming_both_dtypes(dtype, value, given):
    p = gc.param("p", np.zeros(2), dtype=dtype)
    with pytest.raises(DtypeError, match=f"param 'p' expects {dtype}; casting {given} "
                                         "values to it would lose information"):
        p.value = value


def test_ints_out_of_range_of_an_int32_param_are_refused():
    p = gc.param("p", [0, 0], dtype="int32")
    p.value = np.array([1, -5], np.int64)
    assert p.value.dtype == np.int32 and p.value.tolist() == [1, -5]
    with pytest.raises(DtypeError, match="param 'p' expects int32; values from 0 to "
                                         "4294967296 do not fit"):
        p.value = np.array([0, 2**32])


def test_a_finite_float64_value_that_overflows_a_float32_param_is_refused():
    W = gc.param("W", np.zeros(3))
    with pytest.raises(DtypeError, match=r"param 'W' expects float32; a finite value of "
                                         r"magnitude 1e\+39 does not fit in it"):
        W.value = np.array([1.0, 1e39, np.inf])
    np.testing.assert_array_equal(W.value, np.zeros(3))  # left as it was
    W.value = np.array([np.inf, -np.inf, np.nan])          # inf and nan are values
    np.testing.assert_array_equal(W.value, [np.inf, -np.inf, np.nan])


def test_a_torch_tensor_that_tracks_gradients_is_a_value():
    import torch

    tracked = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    W = gc.param("W", tracked)  # e.g. copied from a torch model's weight
    np.testing.assert_array_equal(W.value, [[1, 2], [3, 4]])
    W.value = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    assert W.value.dtype == np.float32 and not W.value.any()
    np.testing.assert_array_equal(gc.const(tracked).value, [[1, 2], [3, 4]])


@pytest.mark.parametrize("value", [np.array([1.0, 2.0, 3.0]), [1, 2, 3], (1.0, 2.0, 3.0),
                                   np.array([1, 2, 3], np.int64)],
                         ids=["float64", "list", "tuple", "int64"])
def test_a_value_of_the_same_kind_is_converted(value):
    b = gc.param("b", np.zeros(3))
    b.value = value
    assert b.value.dtype == np.float32
    np.testing.assert_array_equal(b.value, [1, 2, 3])


def _memmap(tmp_path, array):
    path = tmp_path / "w.npy"
    np.save(path, array)
    return np.load(path, mmap_mode="r")


def _strided(array):
    return np.repeat(array, 2, axis=1)[:, ::2]


@pytest.mark.parametrize("make", [
    lambda a, tmp: a,                                            # the caller's own array
    lambda a, tmp: np.frombuffer(a.tobytes(), np.float32).reshape(a.shape),  # read-only
    lambda a, tmp: np.asfortranarray(a),
    lambda a, tmp: _strided(a),
    lambda a, tmp: _memmap(tmp, a),
    lambda a, tmp: a.astype(np.float64),
], ids=["own", "read-only", "fortran", "strided", "memmap", "float64"])
def test_the_param_holds_a_writable_contiguous_array_of_its_own(make, tmp_path):
    original = np.arange(6, dtype=np.float32).reshape(2, 3)
    given = make(original.copy(), tmp_path)
    W = gc.param("W", np.zeros((2, 3)))
    W.value = given
    held = W.value
    assert type(held) is np.ndarray and held.dtype == np.float32
    assert held.flags.c_contiguous and held.flags.writeable and held.flags.owndata
    assert not np.shares_memory(held, given)
    np.testing.assert_array_equal(held, original)


# --- programs that read and train assigned values, on every backend ---------------------

def test_a_float64_value_assigned_to_a_float32_param_is_read_as_its_numbers(backend):
    x = gc.input("x", (2, 3))
    b = gc.param("b", np.zeros(3))
    f = backend.compile(gc.tanh(x + b))
    b.value = np.array([1.0, 2.0, 3.0])  # float64: C kernels read it as float32 numbers
    X = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    np.testing.assert_allclose(f(x=X), np.tanh(X + [1, 2, 3]), rtol=1e-6)


def _sgd_step(backend, W):
    """One SGD step on W whose update gemm can accumulate into W itself (numpy)."""
    x = gc.input("x", (4, 2))
    loss = gc.sum((x @ W) ** 2)
    return backend.compile(loss, updates=gc.optim.sgd(loss, [W], lr=0.1))


def test_training_never_writes_a_read_only_array_the_user_assigned(backend):
    data = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    frozen = data.tobytes()
    W = gc.param("W", np.zeros((2, 3)))
    step = _sgd_step(backend, W)
    W.value = np.frombuffer(frozen, np.float32).reshape(2, 3)  # a view of a bytes object
    read_only = data.copy()
    read_only.flags.writeable = False
    X = np.ones((4, 2), np.float32)
    step(x=X)
    assert frozen == data.tobytes()  # the bytes object is as it was
    expected = data - 0.1 * X.T @ (2 * X @ data)
    np.testing.assert_allclose(W.value, expected, rtol=1e-5, atol=1e-6)
    W.value = read_only
    step(x=X)
    np.testing.assert_array_equal(read_only, data)
    np.testing.assert_allclose(W.value, expected, rtol=1e-5, atol=1e-6)


def test_a_memory_mapped_value_trains_without_touching_its_file(backend, tmp_path):
    # In a subprocess: before the fix, this step killed the process (a segfault).
    path = tmp_path / "W.npy"
    data = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    np.save(path, data)
    script = textwrap.dedent(f"""
        import numpy as np, graphc as gc
        W = gc.param("W", np.zeros((2, 3)))
        x = gc.input("x", (4, 2))
        loss = gc.sum((x @ W) ** 2)
        step = gc.compile(loss, updates=gc.optim.sgd(loss, [W], lr=0.1),
                          backend={backend.name!r}, opt={backend.opt!r})
        W.value = np.load({str(path)!r}, mmap_mode="r")
        step(x=np.ones((4, 2), np.float32))
        np.save({str(tmp_path / "after.npy")!r}, W.value)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_array_equal(np.load(path), data)  # the file is as it was
    X = np.ones((4, 2), np.float32)
    np.testing.assert_allclose(np.load(tmp_path / "after.npy"),
                               data - 0.1 * X.T @ (2 * X @ data), rtol=1e-5, atol=1e-6)


# --- consts are C-contiguous ---------------------------------------------------------

def test_a_const_holds_a_c_contiguous_read_only_array():
    fortran = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    c = gc.Node("const", (), {}, gc.TensorType((2, 3), "float64"), value=fortran)
    assert c.value.flags.c_contiguous and not c.value.flags.writeable
    np.testing.assert_array_equal(c.value, fortran)
    assert gc.const(fortran).value.flags.c_contiguous


def _transposed_ones_over_x():
    x = gc.input("x", (4, 3))
    return x, gc.transpose(gc.broadcast_to(gc.const(1.0), (3, 4))) / x  # fold: a transposed const


def _gradient_of_a_transposed_sum():
    x = gc.input("x", (4, 3))
    (g,) = gc.grad(gc.sum(gc.transpose(x)), [x])  # the seed is transposed back
    return x, g / x


def _fortran_const_times_x():
    x = gc.input("x", (4, 3))
    return x, gc.const(np.asfortranarray(np.ones((4, 3)))) * x


@pytest.mark.parametrize("build", [_transposed_ones_over_x, _gradient_of_a_transposed_sum,
                                   _fortran_const_times_x],
                         ids=["folded-transpose", "transposed-seed", "fortran-const"])
def test_programs_whose_consts_are_transposed_run(build, backend):
    x, out = build()
    X = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    expected = X if build is _fortran_const_times_x else 1 / X
    np.testing.assert_allclose(backend.run(out, x=X), expected, rtol=1e-6)
