"""The boolean query grammar: what each query means, and where each mistake is reported.

The trees are shown fully bracketed: ``(a AND b)``, ``(a OR b)``, ``NOT a``; a term shows its
field prefix and its quotes as written (``title:"linear attention"``).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paperwatch import query as q


def show(node: q.Node) -> str:
    if isinstance(node, q.Term):
        return str(node)
    if isinstance(node, q.Not):
        return f"NOT {show(node.operand)}"
    joiner = " AND " if isinstance(node, q.And) else " OR "
    return "(" + joiner.join(show(operand) for operand in node.operands) + ")"


MEANING = [
    # query                                      its tree
    # --- terms, and adjacent terms are ANDed
    ("grokking", "grokking"),
    ("deep networks", "(deep AND networks)"),
    ("deep AND networks", "(deep AND networks)"),
    ("deep networks AND grok*", "(deep AND networks AND grok*)"),
    # --- precedence: NOT binds tightest, then AND (written or not), then OR
    ("a OR b c", "(a OR (b AND c))"),
    ("a b OR c", "((a AND b) OR c)"),
    ("a OR b AND c", "(a OR (b AND c))"),
    ("NOT a b", "(NOT a AND b)"),
    ("a OR NOT b", "(a OR NOT b)"),
    ("NOT NOT a", "NOT NOT a"),
    ("a AND NOT b OR c", "((a AND NOT b) OR c)"),
    # --- parentheses override it
    ("(a OR b) c", "((a OR b) AND c)"),
    ("NOT (a OR b)", "NOT (a OR b)"),
    ("((a))", "a"),
    ("a (b OR (c NOT d))", "(a AND (b OR (c AND NOT d)))"),
    # --- quoted phrases are one term; operators inside quotes are words
    ('"linear attention"', '"linear attention"'),
    ('"linear attention" transformer*', '("linear attention" AND transformer*)'),
    ('"deep AND wide"', '"deep AND wide"'),
    ('"(not a group)"', '"(not a group)"'),
    # --- only upper-case AND, OR, NOT are operators: lower-case ones are search words
    ("wide and deep", "(wide AND and AND deep)"),
    ("deep or shallow", "(deep AND or AND shallow)"),
    ("not a survey", "(not AND a AND survey)"),
    ("And Or", "(And AND Or)"),
    # --- field prefixes: on a term, on a phrase, and on every term inside a group without its own
    ("title:grokking", "title:grokking"),
    ('title:"linear network*"', 'title:"linear network*"'),
    ("title: grokking", "title:grokking"),
    ("title:(grok* OR shallow) networks", "((title:grok* OR title:shallow) AND networks)"),
    ("title:(a OR abstract:b)", "(title:a OR abstract:b)"),
    ("abstract:(a (b OR NOT c))", "(abstract:a AND (abstract:b OR NOT abstract:c))"),
    ("title:(a OR (b c))", "(title:a OR (title:b AND title:c))"),
    ('author:"Y. LeCun" org:NVIDIA', '(author:"Y. LeCun" AND org:NVIDIA)'),
    ("ai_keywords:quantization", "ai_keywords:quantization"),
    ("NOT title:survey", "NOT title:survey"),
    # --- whitespace is free
    ("  (a\tOR\nb)  ", "(a OR b)"),
    ("(a)(b)", "(a AND b)"),
]


@pytest.mark.parametrize(("text", "tree"), MEANING, ids=[text for text, _ in MEANING])
def test_a_query_means_its_tree(text: str, tree: str) -> None:
    """Each query parses to the tree its precedence, grouping and prefixes say."""
    assert show(q.parse(text)) == tree


MISTAKES = [
    # query                   message                                                      position
    ("", "the query is empty", 0),
    ("   ", "the query is empty", 0),
    ("a AND", "expected a word, a phrase or '(' but the query ends", 5),
    ("a OR OR b", "expected a word, a phrase or '(' but found 'OR'", 5),
    ("NOT", "expected a word, a phrase or '(' but the query ends", 3),
    ("(a OR b", "'(' is never closed", 0),
    ("a (b (c)", "'(' is never closed", 2),
    ("a OR b)", "unexpected ')'", 6),
    ("()", "expected a word, a phrase or '(' but found ')'", 1),
    ('deep "linear attention', "unclosed quote", 5),
    ("title:", "expected a word, a phrase or '(' after title:", 6),
    ("title: OR a", "expected a word, a phrase or '(' after title:", 7),
    ("grokking titel:deep", "unknown field 'titel', did you mean title?", 9),
    ("Title:deep", "unknown field 'Title', did you mean title?", 0),
    ("a foo:b", "unknown field 'foo' (known: title, abstract, ai_keywords, author, org)", 2),
    ("title:author:x", "expected a word, a phrase or '(' after title:", 6),
]


@pytest.mark.parametrize(("text", "message", "position"), MISTAKES, ids=[text or "empty" for text, _, _ in MISTAKES])
def test_a_mistake_is_named_with_its_position(text: str, message: str, position: int) -> None:
    """The first mistake is reported with its 0-based offset in the query."""
    with pytest.raises(q.QueryError) as caught:
        q.parse(text)
    assert (caught.value.message, caught.value.position) == (message, position)
    assert str(caught.value) == f"{message} at position {position}"


def test_nesting_is_bounded_and_reported_where_it_goes_too_deep() -> None:
    """Absurdly deep parentheses or NOT chains are a QueryError, not a crash of the parser."""
    fine = "(" * q.MAX_DEPTH + "a" + ")" * q.MAX_DEPTH
    assert show(q.parse(fine)) == "a"
    for deep, position in (("(" * 5000 + "a" + ")" * 5000, q.MAX_DEPTH), ("NOT " * 5000 + "a", 4 * q.MAX_DEPTH)):
        with pytest.raises(q.QueryError) as caught:
            q.parse(deep)
        assert caught.value.message == f"nested more than {q.MAX_DEPTH} deep"
        assert caught.value.position == position


def test_terms_keep_their_text_field_position_and_quotes() -> None:
    """Each term records what the rule wrote, so a mistake in its words can point at it."""
    terms = list(q.terms(q.parse('grok* title:"linear attention" NOT author:Bengio')))
    assert terms == [
        q.Term("grok*", None, 0),
        q.Term("linear attention", "title", 12, quoted=True),
        q.Term("Bengio", "author", 42),
    ]


def test_positive_terms_are_those_under_an_even_number_of_nots() -> None:
    """Only terms whose presence supports the query can explain a match."""
    tree = q.parse("a NOT b NOT (c OR NOT d) (e OR f)")
    assert [str(t) for t in q.positive_terms(tree)] == ["a", "d", "e", "f"]


TRUTH = [
    # query                       present terms     holds
    ("a b", {"a", "b"}, True),
    ("a b", {"a"}, False),
    ("a OR b", {"b"}, True),
    ("a OR b", set(), False),
    ("NOT a", set(), True),
    ("NOT a", {"a"}, False),
    ("a NOT b", {"a", "b"}, False),
    ("(a OR b) NOT c", {"b"}, True),
    ("a OR b c", {"a"}, True),
    ("(a OR b) c", {"a"}, False),
]


@pytest.mark.parametrize(("text", "present", "holds"), TRUTH)
def test_evaluate_follows_boolean_logic(text: str, present: set[str], holds: bool) -> None:
    """``evaluate`` is the ordinary truth of the tree, given which terms are present."""
    assert q.evaluate(q.parse(text), lambda term: term.text in present) is holds


@pytest.mark.parametrize(("text", "present", "holds"), [*TRUTH, ("a OR b OR NOT c", {"c"}, False),
                                                      ("a b c", {"a", "b", "c"}, True), ("NOT (a b c)", {"a", "b"}, True)])
def test_a_compiled_query_says_what_evaluate_says(text: str, present: set[str], holds: bool) -> None:
    """``query_source`` writes the tree's truth out as one expression, compiled as the matcher
    compiles it: the same answer as ``evaluate``, for every set of present terms."""
    tree = q.parse(text)
    source = q.query_source(tree, lambda term: f"{term.text!r} in present")
    compiled = eval(f"lambda present: {source}", {"__builtins__": {}})
    assert compiled(present) is holds
    names = sorted({term.text for term in q.terms(tree)})
    for mask in range(2 ** len(names)):
        some = {name for bit, name in enumerate(names) if mask >> bit & 1}
        assert compiled(some) is q.evaluate(tree, lambda term, some=some: term.text in some)


NEEDED = [
    # query                                  terms one of which it needs (None: it may hold with none)
    ("a", ["a"]),
    ("a OR b", ["a", "b"]),
    ("a b", ["a"]),
    ("(a OR b) c", ["c"]),
    ("a NOT b", ["a"]),
    ("NOT b a", ["a"]),
    ("NOT a", None),
    ("a OR NOT b", None),
    ("NOT (NOT a)", None),
    ("(a OR b) (c OR d OR e)", ["a", "b"]),
    ('title:"x y" OR (abstract:z AND NOT w)', ['title:"x y"', "abstract:z"]),
]


@pytest.mark.parametrize(("text", "needed"), NEEDED, ids=[text for text, _ in NEEDED])
def test_a_query_needs_one_of_the_terms_of_each_or_branch_and_one_and_operand(text: str, needed: list[str] | None) -> None:
    """The terms a matcher looks for before evaluating a query: a term under NOT never makes it
    hold, and an AND's operand with the fewest stands for the AND."""
    found = q.needed_terms(q.parse(text))
    assert (None if found is None else [str(term) for term in found]) == needed


_OPERAND: st.SearchStrategy[str] = st.recursive(
    st.sampled_from(["a", "b", "c", "d"]),
    lambda inner: st.one_of(inner.map(lambda x: f"NOT ({x})"), st.tuples(inner, inner).map(" ".join),
                            st.tuples(inner, inner).map(lambda pair: f"({pair[0]}) OR ({pair[1]})")),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(_OPERAND)
def test_a_query_never_holds_without_one_of_the_terms_it_needs(text: str) -> None:
    """Whichever terms are present, a query holds only with one of its needed terms among them, or
    it needs none (None); and a query that holds with no term present always needs none."""
    tree = q.parse(text)
    needed = q.needed_terms(tree)
    for mask in range(16):
        present = {name for bit, name in enumerate("abcd") if mask >> bit & 1}
        if q.evaluate(tree, lambda term, present=present: term.text in present) and needed is not None:
            assert any(term.text in present for term in needed)
    if q.evaluate(tree, lambda term: False):
        assert needed is None


# Mostly the grammar's own characters, so that most examples get past the first lexeme.
QUERY_TEXT = st.lists(
    st.sampled_from(["(", ")", '"', " ", ":", "*", "AND", "OR", "NOT", "and", "title:", "author:", "org:", "x:",
                     "deep", "grok*", "é", "\t"]) | st.text(max_size=3),
    max_size=40,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(QUERY_TEXT)
@pytest.mark.slow
def test_parse_raises_nothing_but_query_error(text: str) -> None:
    """Whatever the text, the parser returns a tree or raises QueryError with a position inside it."""
    try:
        tree = q.parse(text)
    except q.QueryError as exc:
        assert 0 <= exc.position <= len(text)
    else:
        assert list(q.terms(tree))
