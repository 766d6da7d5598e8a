"""The boolean query of a reader rule: a small recursive-descent parser and its evaluator.

    query    := or_expr
    or_expr  := and_expr ("OR" and_expr)*
    and_expr := unary (["AND"] unary)*           adjacent terms are ANDed
    unary    := "NOT" unary | primary
    primary  := [FIELD ":"] ( "(" or_expr ")" | '"' words '"' | word )

Operators are the upper-case words AND, OR and NOT; lower-case ``and``/``or``/``not`` are
search words. FIELD is one of :data:`FIELD_PREFIXES`; a prefix before a parenthesis applies
to every term inside it that has none of its own. Groups and NOTs nest at most
:data:`MAX_DEPTH` deep. What a term's words mean (case, accents, plurals, ``*``, hyphens)
is decided by :mod:`paperwatch.match`, not here.

Written by hand rather than with pyparsing or lark: the grammar is five lines, this module
is shorter than the glue a parser library would need, and it gives exact error positions.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

FIELD_PREFIXES = ("title", "abstract", "ai_keywords", "author", "org")

_LEXEME = re.compile(
    r'\s*(?:(?P<paren>[()])|"(?P<phrase>[^"]*)(?P<closed>")?|(?P<field>[A-Za-z_]+):|(?P<word>[^\s()"]+))'
)
_OPERATORS = ("AND", "OR", "NOT")
MAX_DEPTH = 50  # nested groups and NOTs: far beyond any real query, well within Python's recursion limit


class QueryError(ValueError):
    """The query does not follow the grammar; ``position`` is the 0-based offset of the mistake."""

    def __init__(self, message: str, position: int) -> None:
        self.message = message
        self.position = position
        super().__init__(f"{message} at position {position}")


@dataclass(frozen=True, slots=True)
class Term:
    """One word or quoted phrase, with the field it is restricted to (None: the rule's fields)."""

    text: str
    field: str | None
    position: int
    quoted: bool = False

    def __str__(self) -> str:
        words = f'"{self.text}"' if self.quoted else self.text
        return f"{self.field}:{words}" if self.field else words


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


Node = Term | Not | And | Or


@dataclass(frozen=True, slots=True)
class _Lexeme:
    kind: str  # "(", ")", AND, OR, NOT, "field", "term", "end"
    text: str
    position: int
    quoted: bool = False


def parse(text: str) -> Node:
    """The syntax tree of ``text``; raises QueryError naming the first mistake and where it is."""
    return _Parser(_lex(text)).parse()


def evaluate(node: Node, holds: Callable[[Term], bool]) -> bool:
    """Whether the query is true when exactly the terms for which ``holds`` is true are present."""
    if isinstance(node, Term):
        return holds(node)
    if isinstance(node, Not):
        return not evaluate(node.operand, holds)
    if isinstance(node, And):
        return all(evaluate(operand, holds) for operand in node.operands)
    return any(evaluate(operand, holds) for operand in node.operands)


def query_source(node: Node, test: Callable[[Term], str]) -> str:
    """The query as a Python expression, each term written as ``test(term)`` says: a matcher asks
    the same query of thousands of papers, and one compiled expression costs less than walking
    the tree (or a tree of closures) each time."""
    if isinstance(node, Term):
        return test(node)
    if isinstance(node, Not):
        return f"not ({query_source(node.operand, test)})"
    joiner = " and " if isinstance(node, And) else " or "
    return joiner.join(f"({query_source(operand, test)})" for operand in node.operands)


def terms(node: Node) -> Iterator[Term]:
    """Every term of the query, in order."""
    return (term for term, _negated in _walk(node, False))


def positive_terms(node: Node) -> Iterator[Term]:
    """The terms whose presence supports the query: those under an even number of NOTs."""
    return (term for term, negated in _walk(node, False) if not negated)


def needed_terms(node: Node) -> tuple[Term, ...] | None:
    """Terms one of which is present whenever the query holds, so that it need not be evaluated
    for a paper holding none of them: of an AND, one operand's (the fewest); of an OR, every
    operand's. None if it may hold with none of its terms present (``NOT survey``)."""
    if isinstance(node, Term):
        return (node,)
    if isinstance(node, Not):
        return None
    needed = [found for found in map(needed_terms, node.operands) if found is not None]
    if isinstance(node, And):
        return min(needed, key=len, default=None)
    if len(needed) < len(node.operands):
        return None
    return tuple(term for found in needed for term in found)


def _walk(node: Node, negated: bool) -> Iterator[tuple[Term, bool]]:
    if isinstance(node, Term):
        yield node, negated
    elif isinstance(node, Not):
        yield from _walk(node.operand, not negated)
    else:
        for operand in node.operands:
            yield from _walk(operand, negated)


def _lex(text: str) -> list[_Lexeme]:
    lexemes, position = [], 0
    while (found := _LEXEME.match(text, position)) and found.end() > position:
        start = found.end() - len(found.group(0).lstrip())
        if found["paren"]:
            lexemes.append(_Lexeme(found["paren"], found["paren"], start))
        elif found["phrase"] is not None:
            if not found["closed"]:
                raise QueryError("unclosed quote", start)
            lexemes.append(_Lexeme("term", found["phrase"], start, quoted=True))
        elif found["field"]:
            if found["field"] not in FIELD_PREFIXES:
                raise QueryError(_unknown_field(found["field"]), start)
            lexemes.append(_Lexeme("field", found["field"], start))
        elif found["word"]:
            kind = found["word"] if found["word"] in _OPERATORS else "term"
            lexemes.append(_Lexeme(kind, found["word"], start))
        position = found.end()
    return [*lexemes, _Lexeme("end", "", len(text))]


def _unknown_field(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), FIELD_PREFIXES, n=1)
    hint = f", did you mean {close[0]}?" if close else f" (known: {', '.join(FIELD_PREFIXES)})"
    return f"unknown field {name!r}{hint}"


class _Parser:
    """One method per grammar rule; ``field`` is the prefix inherited from an enclosing group."""

    def __init__(self, lexemes: list[_Lexeme]) -> None:
        self._lexemes = lexemes
        self._next = 0
        self._depth = 0

    def parse(self) -> Node:
        if self._peek().kind == "end":
            raise QueryError("the query is empty", 0)
        node = self._or(None)
        extra = self._peek()
        if extra.kind != "end":
            raise QueryError(f"unexpected {extra.text!r}", extra.position)
        return node

    def _peek(self) -> _Lexeme:
        return self._lexemes[self._next]

    def _take(self) -> _Lexeme:
        lexeme = self._lexemes[self._next]
        self._next += 1
        return lexeme

    def _or(self, field: str | None) -> Node:
        operands = [self._and(field)]
        while self._peek().kind == "OR":
            self._take()
            operands.append(self._and(field))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self, field: str | None) -> Node:
        operands = [self._unary(field)]
        while self._peek().kind in ("AND", "NOT", "(", "field", "term"):
            if self._peek().kind == "AND":
                self._take()
            operands.append(self._unary(field))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _unary(self, field: str | None) -> Node:
        if self._peek().kind == "NOT":
            self._enter(self._take())
            node = Not(self._unary(field))
            self._depth -= 1
            return node
        return self._primary(field)

    def _enter(self, lexeme: _Lexeme) -> None:
        """One level deeper (a group or a NOT); too deep is a mistake, not a RecursionError."""
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise QueryError(f"nested more than {MAX_DEPTH} deep", lexeme.position)

    def _primary(self, field: str | None) -> Node:
        lexeme = self._take()
        if lexeme.kind == "field":
            if self._peek().kind not in ("(", "term"):
                raise QueryError(f"expected a word, a phrase or '(' after {lexeme.text}:", self._peek().position)
            return self._primary(lexeme.text)
        if lexeme.kind == "term":
            return Term(lexeme.text, field, lexeme.position, lexeme.quoted)
        if lexeme.kind == "(":
            self._enter(lexeme)
            node = self._or(field)
            if self._take().kind != ")":
                raise QueryError("'(' is never closed", lexeme.position)
            self._depth -= 1
            return node
        what = "the query ends" if lexeme.kind == "end" else f"found {lexeme.text!r}"
        raise QueryError(f"expected a word, a phrase or '(' but {what}", lexeme.position)
