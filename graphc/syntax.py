"""The text IR's syntax: a tokenizer, and a reader of one line into a record.

graphc/ir.py prints graphs as text (format_graph) and reads them back (parse). This
module is the first half of the reading: it splits a line into tokens that know their
column and reads them by the grammar below, knowing nothing of ops or nodes; ir.parse
gives the records their meaning. Every mistake is a ParseError naming the line and the
column, with the line quoted and a caret under the culprit.

    line    := node | "return" [name {"," name}] | "update" name "=" name | "}"
    node    := name "=" word "(" [arg {"," arg}] ")" ":" type ["{"] ["#" note]
    arg     := name | word "=" literal                  # operands, then attributes
    type    := word "[" [dim {"," dim}] "]"              # f32[batch,2]
    literal := number | string | True | False | None | inf | nan | -inf
             | "(" [literal {"," literal} [","]] ")" | "[" ... "]"
    note    := ["[" tag {"," tag} "]"] ["{" scope/path "}"] [source location]

Brackets and parentheses both read as tuples (attributes are hashable; a const's value
becomes an array either way), and "(x)" is x, as in Python. Nothing here recurses:
literals nest on an explicit stack, at most MAX_DIMS deep, so a deeply nested or
20,000-term attribute is an error or a value, never a RecursionError.
"""

from __future__ import annotations

import ast
import re
import reprlib
import warnings
from dataclasses import dataclass
from typing import NamedTuple

from graphc.errors import ParseError
from graphc.types import SHORT_TO_DTYPE, TensorType

# NumPy 1.x's limit on an array's dims (2.x allows 64): a type with more could hold no
# value, and a literal nested deeper is no const's value or attribute.
MAX_DIMS = 32
_INT64_LIMIT = 2**63  # dims and attribute ints are int64 everywhere past the parser

_TOKEN = re.compile(r"""
     (?P<space>\s+)
    |(?P<comment>\#)
    |(?P<name>%\w+)
    |(?P<number>-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)
    |(?P<word>-?[^\W\d]\w*)
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<punct>[()\[\],=:{}])
    """, re.VERBOSE)
_INT = re.compile(r"-?[0-9]+")
_WORDS = {"True": True, "False": False, "None": None,
          "inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}
_TAGS = re.compile(r"\[([\w,]*)\]\s*")
_SCOPE = re.compile(r"\{(\w+(?:/\w+)*)\}\s*")
_TYPE_TEXT = re.compile(r"[^\s\[]*(?:\[[^\]]*\]?)?")
_CLOSERS = {"(": ")", "[": "]"}
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60


def shorten(value) -> str:
    """A repr of at most about 60 characters (a line or a value may be huge)."""
    return _SHORT.repr(value)


class Token(NamedTuple):
    kind: str    # name | number | word | string | punct
    text: str
    column: int  # 1-based, in the line as written (indentation included)


def excerpt(raw: str, column: int) -> str:
    """The line (a window of it around `column` if it is long) and a caret under it."""
    start = max(0, min(column - 41, len(raw) - 100))
    shown = raw[start:start + 100].replace("\t", " ")
    left, right = ("..." if start else ""), ("..." if start + 100 < len(raw) else "")
    caret = " " * (len(left) + column - 1 - start)
    return f"\n  {left}{shown}{right}\n  {caret}^ column {column}"


@dataclass
class Line:
    """One line of the text, read: `lineno` and `raw` locate every error in it."""
    lineno: int
    raw: str

    def error(self, message: str, column: int, error=ParseError) -> ParseError:
        if len(message) > 400:  # a type rule's message may quote a 20,000-term attribute
            message = message[:400] + "..."
        return error(f"line {self.lineno}: {message}{excerpt(self.raw, column)}",
                     self.lineno, column)


@dataclass
class NodeLine(Line):
    name: Token                 # %name
    op: Token
    operands: list              # [Token]: the %names, in order
    attrs: dict                 # attribute name -> (value, its name's Token)
    type: TensorType
    type_token: Token           # where the type starts
    block: Token | None         # the "{" that opens a kernel's body
    tags: frozenset = frozenset()
    scope: tuple = ()
    loc: str = ""


@dataclass
class ReturnLine(Line):
    outputs: list               # [Token]


@dataclass
class UpdateLine(Line):
    target: Token
    value: Token


@dataclass
class CloseLine(Line):
    brace: Token


def tokenize(line: Line) -> tuple[list, str | None]:
    """The line's tokens and the text after its "#" (None when it has none)."""
    tokens, pos, raw = [], 0, line.raw
    while pos < len(raw):
        m = _TOKEN.match(raw, pos)
        if m is None:
            what = "a string that is not closed" if raw[pos] in "'\"" else (
                f"unexpected character {raw[pos]!r}")
            raise line.error(what, pos + 1)
        if m.lastgroup == "comment":
            return tokens, raw[m.end():]
        if m.lastgroup != "space":
            tokens.append(Token(m.lastgroup, m.group(), pos + 1))
        pos = m.end()
    return tokens, None


class Cursor:
    """Reads a line's tokens in order; an unexpected one is an error at its column."""

    def __init__(self, line: Line, tokens: list):
        self.line, self.tokens, self.i = line, tokens, 0

    def peek(self, ahead=0) -> Token | None:
        k = self.i + ahead
        return self.tokens[k] if k < len(self.tokens) else None

    def column(self) -> int:
        tok = self.peek()
        return tok.column if tok else len(self.line.raw.rstrip()) + 1

    def fail(self, expected: str):
        tok = self.peek()
        got = "the end of the line" if tok is None else shorten(tok.text)
        return self.line.error(f"expected {expected}, got {got}", self.column())

    def accept(self, text: str) -> Token | None:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.text == text:
            self.i += 1
            return tok
        return None

    def take(self, kind: str, expected: str) -> Token:
        """The next token, which must be of `kind` (name, word): else an error."""
        tok = self.peek()
        if tok is None or tok.kind != kind:
            raise self.fail(expected)
        self.i += 1
        return tok

    def punct(self, text: str) -> Token:
        """The next token, which must be the punctuation `text`: else an error."""
        tok = self.accept(text)
        if tok is None:
            raise self.fail(f"'{text}'")
        return tok

    def end(self):
        if self.peek() is not None:
            raise self.line.error(f"unexpected {shorten(self.peek().text)} at the end of the "
                                  "line", self.column())


# --- literals ------------------------------------------------------------------------

def _scalar(cursor: Cursor, tok: Token):
    if tok.kind == "number":
        if _INT.fullmatch(tok.text):
            if len(tok.text) > 20:  # past int64 (and Python's 4300-digit conversion limit)
                raise cursor.line.error(f"the integer {shorten(tok.text)} is too large",
                                        tok.column)
            return int(tok.text)
        return float(tok.text)
    if tok.kind == "word" and tok.text in _WORDS:
        return _WORDS[tok.text]
    if tok.kind == "string":
        return _string(cursor, tok)
    word = (f"unknown name {shorten(tok.text)}" if tok.kind == "word"
            else f"got {shorten(tok.text)}")
    raise cursor.line.error(f"expected a value (a number, a string, True, False, None, "
                            f"a tuple), {word}", tok.column)


def _string(cursor: Cursor, tok: Token) -> str:
    # One string token: Python's reader decodes its escapes, without recursion.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return ast.literal_eval(tok.text)
    except (SyntaxError, ValueError, Warning) as e:
        raise cursor.line.error(f"bad string {shorten(tok.text)}: {e}", tok.column) from None


def read_literal(cursor: Cursor):
    """A value: a scalar, or nested tuples of them, read with a stack (no recursion)."""
    stack = []  # [closer, items, saw_comma, opening token]
    while True:
        tok = cursor.peek()
        if tok is None:
            raise cursor.fail("a value")
        cursor.i += 1
        if tok.kind == "punct" and tok.text in _CLOSERS:
            if len(stack) >= MAX_DIMS:
                raise cursor.line.error(f"a value nested more than {MAX_DIMS} deep",
                                        tok.column)
            stack.append([_CLOSERS[tok.text], [], False, tok])
            if not cursor.accept(_CLOSERS[tok.text]):
                continue
            stack.pop()
            value = ()
        else:
            value = _scalar(cursor, tok)
        while stack:  # a value is complete: it ends the containers it closes
            closer, items, _, opening = top = stack[-1]
            items.append(value)
            if cursor.accept(","):
                top[2] = True
                if not cursor.accept(closer):
                    break  # the next item follows
            elif not cursor.accept(closer):
                raise cursor.fail(f"',' or '{closer}'")
            stack.pop()
            single = opening.text == "(" and len(items) == 1 and not top[2]
            value = items[0] if single else tuple(items)
        else:
            return value


# --- types and notes -----------------------------------------------------------------

def _type_text(line: Line, tok: Token) -> str:
    return _TYPE_TEXT.match(line.raw, tok.column - 1).group() or tok.text


def read_type(cursor: Cursor) -> tuple[TensorType, Token]:
    """`f32[batch,2]` -> TensorType(("batch", 2), "float32"), and where it starts."""
    start = cursor.peek()
    if start is None:
        raise cursor.fail("a type, e.g. f32[batch,2]")
    text = _type_text(cursor.line, start)

    def bad(detail, column):
        return cursor.line.error(f"bad type {shorten(text)}{detail}", column)

    if start.kind != "word" or start.text not in SHORT_TO_DTYPE:
        raise bad("; expected e.g. f32[batch,2]", start.column)
    cursor.i += 1
    if not cursor.accept("["):
        raise bad("; expected e.g. f32[batch,2]", cursor.column())
    dims = []
    while not cursor.accept("]"):
        tok = cursor.peek()
        if tok is None or tok.kind not in ("number", "word"):
            raise bad("; expected e.g. f32[batch,2]", cursor.column())
        cursor.i += 1
        dims.append(_dim(tok, bad))
        if len(dims) > MAX_DIMS:
            raise bad(f": more than {MAX_DIMS} dims", tok.column)
        if not cursor.accept(",") and (cursor.peek() is None or cursor.peek().text != "]"):
            raise bad("; expected e.g. f32[batch,2]", cursor.column())
    return TensorType(tuple(dims), SHORT_TO_DTYPE[start.text]), start


def _dim(tok: Token, bad):
    if tok.kind == "word" and tok.text.isidentifier():
        return tok.text
    if tok.kind == "number" and _INT.fullmatch(tok.text) and not tok.text.startswith("-"):
        if len(tok.text) <= 20 and int(tok.text) < _INT64_LIMIT:
            return int(tok.text)
        raise bad(f": dim {shorten(tok.text)} does not fit in int64", tok.column)
    raise bad(f": bad dim {shorten(tok.text)}: use sizes >= 0 or names", tok.column)


def read_note(note: str | None) -> tuple[frozenset, tuple, str]:
    """`# [grad,fwd] {layer1/act} model.py:7` -> tags, scope path, source location."""
    rest = (note or "").strip()
    tags, path = frozenset(), ()
    m = _TAGS.match(rest)
    if m:
        tags, rest = frozenset(t for t in m.group(1).split(",") if t), rest[m.end():]
    m = _SCOPE.match(rest)
    if m:
        path, rest = tuple(m.group(1).split("/")), rest[m.end():]
    return tags, path, rest.strip()


# --- lines ---------------------------------------------------------------------------

def read_line(lineno: int, raw: str) -> Line | None:
    """The record of one line; None for a blank line or a comment."""
    line = Line(lineno, raw)
    tokens, note = tokenize(line)
    if not tokens:
        return None
    cursor, first = Cursor(line, tokens), tokens[0]
    if first.kind == "name":
        return _node_line(cursor, note)
    if first.text == "return":
        return _return_line(cursor)
    if first.text == "update":
        return _update_line(cursor)
    if first.text == "}" and len(tokens) == 1:
        return CloseLine(lineno, raw, first)
    raise line.error(f"cannot read {shorten(raw.strip())}; expected a node "
                     "(%name = op(...) : type), 'return', 'update' or '}'", first.column)


def _return_line(cursor: Cursor) -> ReturnLine:
    cursor.i += 1
    outputs = []
    if cursor.peek() is not None:
        outputs.append(cursor.take("name", "a %name"))
        while cursor.accept(","):
            outputs.append(cursor.take("name", "a %name"))
    cursor.end()
    return ReturnLine(cursor.line.lineno, cursor.line.raw, outputs)


def _update_line(cursor: Cursor) -> UpdateLine:
    tokens = cursor.tokens
    shape = [(t.kind, t.text if t.kind == "punct" else "") for t in tokens[1:]]
    if shape != [("name", ""), ("punct", "="), ("name", "")]:
        raise cursor.line.error("expected 'update %param = %value'", tokens[0].column)
    return UpdateLine(cursor.line.lineno, cursor.line.raw, tokens[1], tokens[3])


def _node_line(cursor: Cursor, note: str | None) -> NodeLine:
    name = cursor.take("name", "a %name")
    cursor.punct("=")
    op = cursor.take("word", "an op name")
    cursor.punct("(")
    operands, attrs = _arguments(cursor)
    cursor.punct(":")
    type, type_token = read_type(cursor)
    block = cursor.accept("{")
    cursor.end()
    tags, scope, loc = read_note(note)
    line = cursor.line
    return NodeLine(line.lineno, line.raw, name, op, operands, attrs, type, type_token,
                    block, tags, scope, loc)


def _arguments(cursor: Cursor) -> tuple[list, dict]:
    """`%a, %b, axes=(1,))` (up to the closing parenthesis) -> operands, attributes."""
    operands, attrs = [], {}
    while not cursor.accept(")"):
        tok, after = cursor.peek(), cursor.peek(1)
        if tok is not None and tok.kind == "name":
            if attrs:
                raise cursor.line.error("operands come before attributes", tok.column)
            operands.append(tok)
            cursor.i += 1
        elif tok is not None and tok.kind == "word" and after is not None and after.text == "=":
            if tok.text in attrs:
                raise cursor.line.error(f"attribute {tok.text} is given twice", tok.column)
            cursor.i += 2
            attrs[tok.text] = (read_literal(cursor), tok)
        elif tok is None:
            raise cursor.fail("')'")
        else:
            raise cursor.line.error(f"positional arguments must be %names, got "
                                    f"{shorten(tok.text)}", tok.column)
        if not cursor.accept(","):
            cursor.punct(")")
            break
    return operands, attrs
