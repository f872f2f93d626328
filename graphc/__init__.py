"""graphc: declare a model as a graph, differentiate it, optimize it, run it, draw it.

    import graphc as gc
    x = gc.input("x", ("batch", 2)); W = gc.param("W", np.zeros((2, 3)))
    f = gc.compile(gc.relu(x @ W), backend="numpy"); f(x=X)
"""

from graphc import nn, optim, parallel, random, testing
from graphc.autodiff import grad, vjp
from graphc.checkpoint import load, save
from graphc.compile import Function, compile, load_function
from graphc.dsl import (
    abs, add, all_reduce, broadcast_to, cast, concat, const, conv, div, eq, exp, expand_dims, gather,
    ge, getitem, gt, input, le, lift, log, log1p, lt, matmul, max, max_pool, maximum, mean,
    minimum, mul, ne, neg, one_hot, pad, param, pow, relu, reshape, scatter_add, sigmoid,
    sign, size, sqrt, squeeze, step, stop_gradient, sub, sum, take, take_along_axis, tanh,
    transpose, where)
from graphc.dsl import (  # issue 14's elementwise ops
    ceil, clip, cos, erf, floor, fmod, isfinite, isinf, isnan, logical_and, logical_not,
    logical_or, logical_xor, mod, reciprocal, round, rsqrt, sin, square, tan, trunc)
from graphc.dsl import all, any, argmax, argmin, min, prod, std, var  # issue 14's reductions
from graphc.dsl import cumprod, cumsum, einsum, flip, logcumsumexp, stack  # issue 14's scans, layout
from graphc.explore import explore
from graphc.errors import (
    BackendUnavailable, CollectiveError, DtypeError, FeedError, GradError, GraphcError,
    GraphcWarning, ParseError, ShapeError, UsageError)
from graphc.ir import Graph, Node
from graphc.scopes import scope
from graphc.types import TensorType
from graphc.viz import render

__all__ = [
    "Function", "Graph", "Node", "TensorType", "compile", "grad", "vjp", "render", "nn",
    "explore", "scope", "save", "load", "load_function",
    "optim", "parallel", "random", "testing", "abs", "add", "all_reduce", "broadcast_to", "cast", "concat", "const", "conv",
    "div", "eq",
    "exp", "expand_dims", "ge", "getitem", "gt", "input", "le", "lift", "log", "log1p", "lt",
    "matmul", "max", "maximum", "max_pool", "mean", "minimum", "mul", "ne", "neg", "one_hot",
    "param",
    "pow", "relu", "reshape", "sigmoid", "sign", "size", "sqrt", "squeeze", "step",
    "stop_gradient", "sub", "sum", "tanh", "transpose", "where", "GraphcError", "ShapeError",
    "DtypeError", "FeedError", "GradError", "ParseError", "BackendUnavailable", "UsageError",
    "GraphcWarning", "CollectiveError", "pad", "take", "take_along_axis", "gather", "scatter_add",
    "ceil", "clip", "cos", "erf", "floor", "fmod", "isfinite", "isinf", "isnan",
    "logical_and", "logical_not", "logical_or", "logical_xor", "mod", "reciprocal", "round",
    "rsqrt", "sin", "square", "tan", "trunc", "min", "prod", "all", "any", "argmax", "argmin", "std", "var",
    "cumprod", "cumsum", "einsum", "flip", "logcumsumexp", "stack",
]
