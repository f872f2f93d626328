"""ir.parse on bad text: every mistake is a ParseError naming the line, the column and
the node, never a raw exception (TypeError, ValueError, MemoryError, RecursionError);
a node's written type, arity and attributes are checked by the op table as building
the node would check them; a kernel's body is read and checked the same way; values the
text holds no data for stay within a budget. `graphc opt` and `graphc kernels` on such
text exit 1 with the message, no traceback."""

import re
import tracemalloc

import numpy as np
import pytest

import graphc as gc
from graphc import ir, ops
from graphc.cli import main
from graphc.errors import (
    DtypeError, ParseDtypeError, ParseError, ParseShapeError, ShapeError)
from graphc.passes.fusion import check_kernel
from graphc.types import TensorType

X = "%x = input() : f32[2]\n"


def parse_error(text, **kwargs) -> ParseError:
    with pytest.raises(ParseError) as info:
        ir.parse(text, **kwargs)
    assert info.value.__cause__ is None
    return info.value


def check(text, line, column, message, **kwargs) -> ParseError:
    error = parse_error(text, **kwargs)
    assert (error.line, error.column) == (line, column), str(error)
    assert message in str(error), str(error)
    first = str(error).splitlines()[0]
    assert first.startswith(f"line {line}: ") and str(error).endswith(f"^ column {column}")
    return error


# --- item 7: bad text -----------------------------------------------------------------

@pytest.mark.parametrize("text,line,column,message", [
    (X + "%y = exp(%x) : f32[2]\nreturn %y\nupdate %x = %y", 4, 8,
     "update %x: %x is 'input', not a param"),
    (X + "%c = const(fill=1.0) : f32[2]\nreturn %x\nupdate %c = %x", 4, 8,
     "is 'const', not a param"),
    ("%W = param() : f32[2]\n%y = exp(%W) : f32[2]\nreturn %y\nupdate %W = %y\nupdate %W = %W",
     5, 8, "%W is updated twice (first at line 4)"),
    ("%W = param() : f32[2]\n%s = sum(%W, axes=(0,), keepdims=False) : f32[]\nreturn %s\n"
     "update %W = %s", 4, 13, "the new value %s is f32[], but the param is f32[2]"),
    (X + "return %x\nupdate %x = %nope", 3, 13, "%nope is not defined"),
])
def test_updates_are_of_params_once_each_to_a_value_of_their_type(text, line, column, message):
    check(text, line, column, message)


@pytest.mark.parametrize("text,message", [
    ("%c = const(value=[[1.0, 2.0], [3.0]]) : f32[2,2]", "the value of const %c is not an array"),
    ("%c = const(value=[1.0, 2.0, 3.0]) : f32[2]", "has shape (3,), but the const is f32[2]"),
    ("%c = const(value=[[1.0, 2.0]]) : f32[2]", "has shape (1, 2), but the const is f32[2]"),
    ("%c = const(value=1.0) : f32[2]", "has shape (), but the const is f32[2]"),
    ("%c = const(value=[1.5, 2.0]) : i32[2]", "casting float64 values to it would lose"),
    ("%c = const(value=[3000000000]) : i32[1]", "values from 3000000000 to 3000000000 do not fit"),
    ("%c = const(value=[1e39]) : f32[1]", "a finite value of magnitude 1e+39 does not fit"),
    ("%c = const(value=['a', 'b']) : f32[2]", "expects float32, got <U1 values"),
    ("%c = const(value=[None, 1.0]) : f32[2]", "expects float32, got object values"),
    ("%c = const(fill=(1.0, 2.0)) : f32[2]", "the fill of const %c must be one number"),
    ("%c = const(fill=nan) : i64[2]", "casting float64 values to it would lose"),
])
def test_a_const_value_must_be_exactly_its_type(text, message):
    check(text + "\nreturn %c", 1, 12, message)
    check("%c = const(value=[1.0, 2.0]) : f32[n]\nreturn %c", 1, 32,
          "the value of const %c needs a fixed type (its value has a size), got f32[n]")


@pytest.mark.parametrize("text,column,message", [
    ("%c = const() : f32[2]", 6, "a const takes value=[...] or fill=x (one of them)"),
    ("%c = const(fill=1.0, value=[1.0, 1.0]) : f32[2]", 6, "a const takes value=[...] or fill"),
    ("%c = const(shape=(2,)) : f32[2]", 12, "const takes value=[...] or fill=x, not shape="),
    ("%x = input(fill=1.0) : f32[2]", 12, "input takes no attributes, not fill="),
    ("%y = input() : f32[2]\n%x = param(%y) : f32[2]", 12, "param takes no operands"),
])
def test_sources_take_no_operands_and_only_their_attributes(text, column, message):
    check(text + "\nreturn %x", text.count("\n") + 1, column, message)


def test_a_huge_param_is_refused_not_allocated():
    tracemalloc.start()
    try:
        error = check("%W = param() : f32[100000,1000000]\nreturn %W", 1, 16,
                      "param %W : f32[100000,1000000] would take 400,000,000,000 bytes")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "max_value_bytes=268,435,456" in str(error) and peak < 2**20
    check("%c = const(fill=0.0) : f64[65536,65536]\nreturn %c", 1, 24, "would take 34,359,738,368")


def test_the_value_budget_counts_every_param_and_fill_of_a_text():
    two = "%a = param() : f32[1024]\n%b = const(fill=2.0) : f32[1024]\nreturn %a, %b"
    a, b = ir.parse(two, max_value_bytes=8192).outputs  # within it: zeros, and the fill
    assert a.value.shape == (1024,) and not a.value.any() and (b.value == 2).all()
    check(two, 2, 24, "parse makes at most max_value_bytes=8,191 bytes", max_value_bytes=8191)
    held = ir.parse("%c = const(value=[1.0, 2.0]) : f32[2]\nreturn %c", max_value_bytes=0)
    assert held.outputs[0].value.tolist() == [1.0, 2.0]  # the text holds it: no budget


@pytest.mark.parametrize("type,column,message", [
    ("f32[n]", 16, "param %W needs a fixed type (its value has a size), got f32[n]"),
    ("f32[99999999999999999999]", 20, "dim '99999999999999999999' does not fit in int64"),
    ("f32[" + ",".join(["1"] * 33) + "]", 84, "more than 32 dims"),
    ("f32[2.5]", 20, "bad dim '2.5': use sizes >= 0 or names"),
    ("f32[0,4611686018427387904]", 16, "f32[0,4611686018427387904] is larger than an array"),
    ("f32[2", 21, "bad type 'f32[2'; expected e.g. f32[batch,2]"),
])
def test_a_param_type_must_be_fixed_and_fit(type, column, message):
    check(f"%W = param() : {type}\nreturn %W", 1, column, message)


def test_a_20000_term_attribute_is_an_error_not_a_recursion_error():
    terms = "+".join(["1"] * 20000)
    check(X + f"%y = expand_dims(%x, axis={terms}) : f32[1,2]\nreturn %y", 2, 28,
          "unexpected character '+'")
    deep = "(" * 20000 + "0" + ")" * 20000
    check(X + f"%y = sum(%x, axes={deep}, keepdims=False) : f32[]\nreturn %y", 2, 51,
          "a value nested more than 32 deep")
    check("%c = const(value=" + "[" * 20000 + "1.0" + "]" * 20000 + ") : f32[1]\nreturn %c",
          1, 50, "a value nested more than 32 deep")
    many = ", ".join(["0"] * 20000)
    error = check(X + f"%y = sum(%x, axes=({many}), keepdims=False) : f32[]\nreturn %y", 2, 6,
                  "sum: axes (0, 0, 0")
    assert len(str(error)) < 1000  # the message quotes the line and the value shortened


def test_a_scope_path_of_20000_names_reads_back():
    text = "%x = input() : f32[2]  # {" + "/".join(["s"] * 20000) + "} m.py:1\nreturn %x"
    graph = ir.parse(text)
    assert len(graph.nodes[0].scope.path) == 20000 and str(graph) == text


@pytest.mark.parametrize("text,line,column,message", [
    (X + "%y = frob(%x) : f32[2]\nreturn %y", 2, 6, "unknown op 'frob'"),
    (X + "%x = exp(%x) : f32[2]\nreturn %x", 2, 1, "%x is already defined at line 1"),
    (X + "%y = add(%x, %z) : f32[2]\nreturn %y", 2, 14, "%z is used before it is defined"),
    (X + "return %x, %q", 2, 12, "%q is not defined"),
    (X + "return %x\nreturn %x", 3, 1, "a second 'return' line (the first is line 2)"),
    (X + "}\nreturn %x", 2, 1, "this '}' closes no kernel body"),
    (X + "%y = cast(%x, dtype='f32) : f32[2]\nreturn %y", 2, 21, "a string that is not closed"),
    (X + "%y = exp(%x) ; f32[2]\nreturn %y", 2, 14, "unexpected character ';'"),
    (X + "%y = exp(%x : f32[2]\nreturn %y", 2, 13, "expected ')', got ':'"),
    (X + "%y = exp(%x) : f32[2] junk\nreturn %y", 2, 23, "unexpected 'junk' at the end"),
    (X + "%y = exp(%x) : f32[2] {\nreturn %y", 2, 23, "only a fused kernel has a body, not exp"),
    (X + "%y = exp(%x, 3) : f32[2]\nreturn %y", 2, 14, "positional arguments must be %names"),
    (X + "%y = sum(axes=(0,), %x, keepdims=False) : f32[]\nreturn %y", 2, 21,
     "operands come before attributes"),
    (X + "%y = sum(%x, axes=(0,), axes=(0,), keepdims=False) : f32[]\nreturn %y", 2, 25,
     "attribute axes is given twice"),
    (X + "%y = expand_dims(%x, axis=" + "9" * 5000 + ") : f32[1,2]\nreturn %y", 2, 27,
     "is too large"),
    (X + "%y = cast(%x, dtype=float32) : f32[2]\nreturn %y", 2, 21, "unknown name 'float32'"),
    (X + "%y = cast(%x, dtype='\\N{nope}') : f32[2]\nreturn %y", 2, 21, "bad string"),
])
def test_bad_syntax_names_the_line_and_column(text, line, column, message):
    check(text, line, column, message)


# --- item 8: ill-typed text -----------------------------------------------------------

@pytest.mark.parametrize("text,column,message", [
    (X + "%y = exp(%x) : f32[3]", 16, "%y is written as f32[3], but exp(f32[2]) is f32[2]"),
    (X + "%y = exp(%x) : f64[2]", 16, "%y is written as f64[2], but exp(f32[2]) is f32[2]"),
    (X + "%y = gt(%x, %x) : f32[2]", 19, "but gt(f32[2], f32[2]) is bool[2]"),
    (X + "%y = sum(%x, axes=(0,), keepdims=True) : f32[]", 42, "is f32[1]"),
    (X + "%y = exp(%x, %x) : f32[2]", 6, "exp: takes 1 inputs, got 2 (in %y)"),
    (X + "%y = add(%x) : f32[2]", 6, "add: takes 2 inputs, got 1 (in %y)"),
    (X + "%y = concat(axis=0) : f32[2]", 6, "concat: needs at least one input (in %y)"),
    (X + "%y = exp(%x, foo=1) : f32[2]", 14, "exp: takes attributes [], got ['foo'] (in %y)"),
    (X + "%y = sum(%x, axes=(0,)) : f32[]", 6, "sum: takes attributes ['axes', 'keepdims']"),
    (X + "%y = sum(%x, axes=0, keepdims=False) : f32[]", 14, "sum: axes must be a tuple of ints"),
    (X + "%y = sum(%x, axes=(0,), keepdims=1) : f32[]", 25, "sum: keepdims must be True or False"),
    (X + "%y = cast(%x, dtype='f16') : f32[2]", 15, "cast: dtype must be a dtype name"),
    (X + "%y = transpose(%x, perm=(0.5,)) : f32[2]", 20, "transpose: perm must be a tuple of ints"),
    (X + "%y = reshape(%x, shape=(-2,)) : f32[2]", 18, "reshape: shape must be a shape"),
    (X + "%y = slice(%x, index=((0, 1),)) : f32[1]", 16, "slice: index must be a tuple of (start"),
    (X + "%y = expand_dims(%x, axis=True) : f32[1,2]", 22, "expand_dims: axis must be an int"),
    (X + "%y = expand_dims(%x, axis=9) : f32[1,2]", 6, "expand_dims: axis 9 out of range"),
    ("%l = input() : i64[2]\n%y = one_hot(%l, depth=0, dtype='float32') : f32[2,0]", 18,
     "one_hot: depth must be a fixed size >= 1, got 0"),
])
def test_a_node_is_checked_by_its_ops_arity_attributes_and_type_rule(text, column, message):
    error = check(text + "\nreturn %y", 2, column, message)
    assert isinstance(error, (ParseShapeError, ParseDtypeError))  # see the test below


def test_a_type_rule_refusal_keeps_its_error_class():
    error = check("%a = input() : f32[2]\n%b = input() : f32[3]\n%y = add(%a, %b) : f32[2]\n"
                  "return %y", 3, 6, "add: shapes (2,) and (3,) do not broadcast (in %y)")
    assert isinstance(error, ParseShapeError) and isinstance(error, ShapeError)
    error = check("%i = input() : i32[2]\n%y = exp(%i) : i32[2]\nreturn %y", 2, 6,
                  "exp: needs a float operand, got int32")
    assert isinstance(error, ParseDtypeError) and isinstance(error, DtypeError)
    # a written type that is wrong: in its shape a ShapeError, in its dtype alone a DtypeError
    shape = parse_error(X + "%y = exp(%x) : f32[3]\nreturn %y")
    dtype = parse_error(X + "%y = exp(%x) : f64[2]\nreturn %y")
    assert isinstance(shape, ShapeError) and isinstance(dtype, DtypeError)


KERNEL = """\
%x = input() : f32[batch,8]
%b = param() : f32[8]
%k = fused(%x, %b, kind='pointwise') : f32[batch,8] {  # m.py:3
    %in0 = input() : f32[batch,8]
    %in1 = input() : f32[8]
    %0 = add(%in0, %in1) : f32[batch,8]
    %1 = relu(%0) : f32[batch,8]
    return %1
}
return %k"""


def kernel_error(old, new, line, column, message, **kwargs):
    assert old in KERNEL
    error = check(KERNEL.replace(old, new), line, column, message, **kwargs)
    return error


def test_a_kernel_body_is_read_and_checked_with_its_lines_numbered_in_the_text():
    assert str(ir.parse(KERNEL, check_kernel=check_kernel)) == KERNEL
    error = kernel_error("%1 = relu(%0) : f32[batch,8]", "%1 = relu(%0) : f32[batch,9]", 7, 21,
                         "%1 is written as f32[batch,9], but relu(f32[batch,8]) is f32[batch,8]")
    assert "(in the body of %k, opened at line 3)" in str(error)
    kernel_error("%in1 = input() : f32[8]", "%in1 = input() : f32[9]", 5, 22,
                 "fused: body input in1 is f32[9], operand 1 is f32[8]")
    kernel_error("%in1 = input() : f32[8]\n",
                 "%in1 = input() : f32[8]\n    %in2 = input() : f32[8]\n", 6, 5,
                 "fused: the body reads more inputs than its kernel's 2 operands")
    kernel_error("kind='pointwise') : f32[batch,8]", "kind='pointwise') : f32[batch,7]", 3, 40,
                 "%k is written as f32[batch,7], but fused(f32[batch,8], f32[8]) is f32[batch,8]")
    kernel_error("    return %1\n", "", 8, 1, "a kernel's body needs a 'return' line before "
                 "its '}' (in the body of %k, opened at line 3)")
    kernel_error("    return %1\n", "    return %1\n    update %in0 = %1\n", 9, 5,
                 "a kernel's body has no updates")
    kernel_error("%1 = relu(%0) : f32[batch,8]",
                 "%1 = fused(%0, kind='pointwise') : f32[batch,8] {", 7, 53,
                 "a kernel's body holds no kernels of its own")


def test_a_kernel_body_is_checked_against_its_kind_where_the_caller_asks():
    bad_kind = KERNEL.replace("kind='pointwise'", "kind='sideways'")
    assert str(ir.parse(bad_kind)) == bad_kind  # the op table knows no kernel kinds
    check(bad_kind, 3, 6, "%k is not a valid sideways kernel: unknown kernel kind 'sideways'",
          check_kernel=check_kernel)
    reduction = KERNEL.replace("kind='pointwise'", "kind='reduction'")
    check(reduction, 3, 6, "a reduction kernel holds a sum or max", check_kernel=check_kernel)


# --- the commands on bad text ---------------------------------------------------------

ILL_TYPED = X + "%y = exp(%x) : f32[3]\n%z = tanh(%y) : f32[3]\nreturn %z\n"


@pytest.mark.parametrize("command", [["opt", "-O2"], ["opt", "--passes", "fuse"],
                                     ["kernels", "--dim", "batch=4", "--no-compile"]])
@pytest.mark.parametrize("text,message", [
    (ILL_TYPED, "line 2: %y is written as f32[3], but exp(f32[2]) is f32[2]"),
    (KERNEL.replace("'pointwise'", "'reduction'"), "line 3: %k is not a valid reduction kernel"),
    ("%W = param() : f32[100000,1000000]\nreturn %W\n", "line 1: param %W"),
])
def test_the_commands_on_bad_text_exit_1_with_the_message(command, text, message, tmp_path,
                                                        capsys):
    path = tmp_path / "bad.ir"
    path.write_text(text)
    assert main([command[0], str(path), *command[1:]]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"graphc {command[0]}: error: {message}")
    assert "Traceback" not in captured.err and captured.out == ""
    assert re.search(r"\^ column \d+\n$", captured.err)


def test_attribute_kinds_are_the_op_tables_and_checked_wherever_a_node_is_made():
    t = TensorType((2, 3))
    assert all(set(d.attrs.values()) <= set(ops.ATTR_KINDS) for d in ops.OPS.values())
    for attrs, message in [({"axes": [0], "keepdims": False}, "sum: axes must be a tuple"),
                           ({"axes": (np.int64(0),), "keepdims": False}, "a tuple of ints"),
                           ({"axes": (2**63,), "keepdims": False}, "a tuple of ints"),
                           ({"axes": (0,), "keepdims": None}, "keepdims must be True or False")]:
        with pytest.raises(ShapeError, match=re.escape(message)):
            ops.infer_type("sum", [t], attrs)
    x = gc.input("x", (2, 3))
    with pytest.raises(ShapeError, match="one_hot: depth must be a fixed size >= 1, got 2.5"):
        gc.one_hot(gc.cast(x, "int64"), 2.5)
    with pytest.raises(ShapeError, match="keepdims must be True or False"):  # lint: the rule
        gc.Graph(gc.Node("sum", (x,), {"axes": (0,), "keepdims": 0}, TensorType((3,)))).lint()
