"""The errors graphc raises for user mistakes.

Each one names the thing at fault (op, input name, shapes) and, where a node is involved,
the user's source line that created it, so a message points at the model, not at graphc.
"""


class GraphcError(Exception):
    """Base class of every error graphc raises on purpose."""


class ShapeError(GraphcError, ValueError):
    """Shapes that do not fit an op, found when the graph is built."""


class DtypeError(GraphcError, TypeError):
    """A dtype an op does not accept, or a cast that would lose information."""


class UsageError(GraphcError, TypeError):
    """A graphc function given the wrong kind of argument: not a node where nodes are
    expected, an input where a param belongs, an empty or repeated list of params."""


class FeedError(GraphcError, ValueError):
    """A call's feeds do not match the graph's inputs (name, rank, dimension, dtype)."""


class GradError(GraphcError, ValueError):
    """A gradient that cannot be taken as asked (non-scalar output, disconnected input)."""


class ParseError(GraphcError, ValueError):
    """Text IR that cannot be read back; names the line and the column (also as the
    `line` and `column` attributes, 1-based; None where the text as a whole is at fault)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.line, self.column = line, column


class ParseShapeError(ParseError, ShapeError):
    """Text IR whose node an op's type rule refuses for its shapes (a ShapeError too)."""


class ParseDtypeError(ParseError, DtypeError):
    """Text IR whose node an op's type rule refuses for its dtypes (a DtypeError too)."""


class BackendUnavailable(GraphcError, RuntimeError):
    """A backend that needs software or hardware this machine does not have."""


class GraphcWarning(UserWarning):
    """Something graphc did otherwise than it would have liked, and why: e.g. a function
    whose C kernels could not be built runs NumPy kernels instead."""
