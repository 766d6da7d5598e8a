"""Reader rules compiled: each keyword, phrase, regex, author and organization of every rule is
a probe (a distinct thing to look for, shared by all rules that ask for it), and each rule says
which probes, found in which fields, make it match, confirm it or veto it."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from paperwatch import query as q
from paperwatch.errors import RuleProblem
from paperwatch.names import name_forms, organization_key
from paperwatch.patterns import compile_pattern, fold_pattern
from paperwatch.terms import Node, Step, keyword_words, spellings

FIELDS = ("title", "abstract", "ai_keywords", "authors", "organization")
DEFAULT_FIELDS = ("title", "abstract", "ai_keywords")
FIELD_NUMBER = {name: number for number, name in enumerate(FIELDS)}
# Probes are numbered in steps of 8, so that a probe found in field number f is one int: probe + f.
PROBE_STEP = 8
_QUERY_FIELDS = {"title": "title", "abstract": "abstract", "ai_keywords": "ai_keywords"}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One reader's rule, as the matcher takes it (config rules are adapted into this)."""

    reader: str
    name: str
    keywords: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    query: str | None = None
    min_upvotes: int = 0


@dataclass(frozen=True, slots=True)
class Term:
    label: str  # as the rule wrote it
    probe: int
    fields: frozenset[str]
    keys: tuple[int, ...] = field(init=False, compare=False)  # the probe in each field, in the order of FIELDS

    def __post_init__(self) -> None:
        offsets = _OFFSETS.get(self.fields)
        if offsets is None:  # one of the 31 sets of fields: a term's keys are then one C call
            offsets = _OFFSETS[self.fields] = tuple(n for n, name in enumerate(FIELDS) if name in self.fields)
        object.__setattr__(self, "keys", tuple(map(self.probe.__add__, offsets)))


_OFFSETS: dict[frozenset[str], tuple[int, ...]] = {}


@dataclass(frozen=True, slots=True)
class Rule:
    reader: str
    name: str
    any_of: tuple[Term, ...]
    all_of: tuple[Term, ...]
    none_of: tuple[Term, ...]
    query: q.Node | None
    query_terms: dict[q.Term, Term]
    min_upvotes: int

    def terms(self) -> Iterator[Term]:
        """Every term, including those that can only veto or confirm a match."""
        yield from self.any_of
        yield from self.all_of
        yield from self.none_of
        yield from self.query_terms.values()

    def triggers(self) -> tuple[Term, ...] | None:
        """Terms one of which a paper holds whenever the rule matches, so that it need be evaluated
        only then: its keywords, authors and organizations, and those its query needs (a term
        under NOT never makes it hold, and an AND holds only if each operand does, so one's terms
        will do); None if it may match a paper holding none of them (a query such as ``NOT survey``)."""
        if self.query is None:
            return self.any_of
        needed = q.needed_terms(self.query)
        return None if needed is None else self.any_of + tuple(self.query_terms[term] for term in needed)

    def positive(self) -> tuple[Term, ...]:
        """The query's terms a why shows when the query holds."""
        return () if self.query is None else tuple(self.query_terms[t] for t in q.positive_terms(self.query))


class _Report(Protocol):
    """Records one mistake in the rule being compiled, at ``key`` inside it."""

    def __call__(self, *key: str | int, message: str) -> None: ...


@dataclass
class Builder:
    """Collects probes (distinct things to look for) shared by all rules, and the problems found."""

    trie: Node = field(default_factory=Node)
    words: dict[tuple[Step, ...], int] = field(default_factory=dict)
    regexes: dict[str, tuple[int, re.Pattern[str]]] = field(default_factory=dict)
    authors: dict[str, list[tuple[int, tuple[str, ...]]]] = field(default_factory=dict)
    author_probes: dict[str, int] = field(default_factory=dict)
    organizations: dict[str, int] = field(default_factory=dict)
    count: int = 0
    problems: list[RuleProblem] = field(default_factory=list)

    def _new(self) -> int:
        self.count += 1
        return (self.count - 1) * PROBE_STEP

    def keyword(self, text: str, fields: frozenset[str]) -> Term:
        if text.startswith("re:"):
            return Term(text, self._regex(text[3:]), fields)
        return self.words_term(text, fields)

    def words_term(self, text: str, fields: frozenset[str]) -> Term:
        """A word or phrase, never a regular expression (query terms are always this)."""
        words = keyword_words(text)
        if words not in self.words:
            probe = self.words[words] = self._new()
            for sequence in spellings(words):
                node = self.trie
                for step in sequence:
                    node = node.add(step)
                if probe not in node.ends:
                    node.ends.append(probe)
        return Term(text, self.words[words], fields)

    def _regex(self, pattern: str) -> int:
        folded = fold_pattern(pattern)
        if folded not in self.regexes:
            self.regexes[folded] = (self._new(), compile_pattern(folded, pattern))
        return self.regexes[folded][0]

    def author(self, text: str) -> Term:
        if "*" in text:
            raise ValueError(f"{text!r}: '*' is not supported in names: give the whole surname")
        if "," in text:  # "LeCun, Yann", or two authors in one string: neither would ever match
            raise ValueError(f"{text!r}: give one author per entry, given names first, as in 'Yann LeCun'")
        forms = name_forms(text, pattern=True)
        if not forms:
            raise ValueError(f"{text!r} is not a name")
        key = "|".join(f"{' '.join(given)}/{surname}" for given, surname in forms)
        if key not in self.author_probes:
            probe = self.author_probes[key] = self._new()
            for given, surname in forms:
                self.authors.setdefault(surname, []).append((probe, given))
        return Term(text, self.author_probes[key], frozenset({"authors"}))

    def organization(self, text: str) -> Term:
        if "*" in text:
            raise ValueError(f"{text!r}: '*' is not supported in names: give the whole name")
        key = organization_key(text)
        if not key:
            raise ValueError(f"{text!r} is not an organization name")
        if key not in self.organizations:
            self.organizations[key] = self._new()
        return Term(text, self.organizations[key], frozenset({"organization"}))

    def rule(self, spec: RuleSpec) -> Rule | None:
        def problem(*key: str | int, message: str) -> None:
            self.problems.append(RuleProblem(spec.reader, spec.name, key, message))

        before = len(self.problems)
        fields = self._fields(spec, problem)

        def terms(key: str, texts: tuple[str, ...], make: Callable[[str], Term]) -> tuple[Term, ...]:
            made = []
            for index, text in enumerate(texts):
                try:
                    made.append(make(text))
                except ValueError as exc:
                    problem(key, index, message=str(exc))
            return tuple(made)

        def keyword(text: str) -> Term:
            return self.keyword(text, fields)

        any_of = (terms("keywords", spec.keywords, keyword) + terms("authors", spec.authors, self.author)
                  + terms("organizations", spec.organizations, self.organization))
        all_of, none_of = terms("all", spec.all, keyword), terms("exclude", spec.exclude, keyword)
        parsed, query_terms = self._query(spec, problem, fields)
        if not (spec.keywords or spec.authors or spec.organizations or spec.query):
            problem(message="empty rule: give keywords, authors, organizations or a query")
        if spec.min_upvotes < 0:
            problem("min_upvotes", message=f"must be at least 0, got {spec.min_upvotes}")
        if len(self.problems) > before:
            return None
        return Rule(spec.reader, spec.name, any_of, all_of, none_of, parsed, query_terms, spec.min_upvotes)

    def _fields(self, spec: RuleSpec, problem: _Report) -> frozenset[str]:
        for index, name in enumerate(spec.fields):
            if name not in FIELDS:
                close = difflib.get_close_matches(name, FIELDS, n=1)
                hint = f", did you mean {close[0]}?" if close else f" (known: {', '.join(FIELDS)})"
                problem("fields", index, message=f"unknown field {name!r}{hint}")
        return frozenset(spec.fields or DEFAULT_FIELDS) & frozenset(FIELDS)

    def _query(self, spec: RuleSpec, problem: _Report,
               fields: frozenset[str]) -> tuple[q.Node | None, dict[q.Term, Term]]:
        if spec.query is None:
            return None, {}
        try:
            parsed = q.parse(spec.query)
            made = {term: self._query_term(term, fields) for term in q.terms(parsed)}
        except q.QueryError as exc:
            problem("query", message=str(exc))
            return None, {}
        return parsed, made

    def _query_term(self, term: q.Term, fields: frozenset[str]) -> Term:
        try:
            if term.field == "author":
                made = self.author(term.text)
            elif term.field == "org":
                made = self.organization(term.text)
            else:
                narrowed = frozenset({_QUERY_FIELDS[term.field]}) if term.field else fields
                made = self.words_term(term.text, narrowed)
        except ValueError as exc:
            raise q.QueryError(str(exc), term.position) from None
        return Term(str(term), made.probe, made.fields)


def rule_problems(rules: Iterable[RuleSpec]) -> list[RuleProblem]:
    """Every mistake in ``rules``, each saying where it is (``str`` of one is the line to show); [] if none."""
    builder = Builder()
    compile_rules(builder, rules)
    return builder.problems


def compile_rules(builder: Builder, rules: Iterable[RuleSpec]) -> list[Rule]:
    compiled, seen = [], set()
    for spec in rules:
        if (spec.reader, spec.name) in seen:
            builder.problems.append(RuleProblem(spec.reader, spec.name, (), "two rules of one reader have this name"))
        seen.add((spec.reader, spec.name))
        rule = builder.rule(spec)
        if rule is not None:
            compiled.append(rule)
    return compiled


