"""fold: text IR in, text IR out; values unchanged; the size cap; size() of fixed dims."""

from graphc.ir import parse
from graphc.passes.fold import MAX_FOLD_BYTES, fold
from tests.passes.irtools import run_text, strip


def test_folds_const_subexpressions_and_fixed_sizes():
    _, after = run_text(fold, """
        %x = input() : f32[2,3]
        %a = const(value=[1.0, 2.0, 3.0]) : f32[3]
        %b = const(fill=2.0) : f32[]
        %0 = mul(%a, %b) : f32[3]
        %1 = exp(%0) : f32[3]
        %2 = add(%x, %1) : f32[2,3]
        %3 = size(%x, axes=(0, 1), dtype='float32') : f32[]
        %4 = div(%2, %3) : f32[2,3]
        return %4""")
    assert strip(str(after)) == strip("""
        %x = input() : f32[2,3]
        %0 = const(value=[7.3890557289123535, 54.598148345947266, 403.42877197265625]) : f32[3]
        %1 = add(%x, %0) : f32[2,3]
        %2 = const(fill=6.0) : f32[]
        %3 = div(%1, %2) : f32[2,3]
        return %3""")


def test_size_cap_and_symbolic_dims_are_left_alone():
    _, after = run_text(fold, """
        %c = const(fill=0.0) : f32[]
        %0 = broadcast_to(%c, shape=(200, 200)) : f32[200,200]
        %1 = broadcast_to(%c, shape=(2, 2)) : f32[2,2]
        %x = input() : f32[batch,2]
        %2 = size(%x, axes=(0,), dtype='float32') : f32[]
        %3 = size(%x, axes=(1,), dtype='float32') : f32[]
        return %0, %1, %2, %3""")
    assert 200 * 200 * 4 > MAX_FOLD_BYTES
    assert strip(str(after)) == strip("""
        %0 = const(fill=0.0) : f32[]
        %1 = broadcast_to(%0, shape=(200, 200)) : f32[200,200]
        %2 = const(fill=0.0) : f32[2,2]
        %x = input() : f32[batch,2]
        %3 = size(%x, axes=(0,), dtype='float32') : f32[]
        %4 = const(fill=2.0) : f32[]
        return %1, %2, %3, %4""")


def test_an_evaluation_error_is_left_to_run_time():
    before = parse("""
        %c = const(value=[0, 7]) : i64[2]
        %0 = one_hot(%c, depth=3, dtype='float32') : f32[2,3]
        return %0""")
    assert strip(str(fold(before))) == strip(str(before))


def test_params_are_not_folded():
    _, after = run_text(fold, """
        %W = param() : f32[2]
        %c = const(fill=1.0) : f32[]
        %0 = add(%W, %c) : f32[2]
        return %0""")
    assert [n.op for n in after.nodes] == ["param", "const", "add"]
