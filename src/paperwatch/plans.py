"""Compiled rules as the matcher evaluates them: each distinct term condition (a probe, in some
fields) numbered once for every rule, what each hit key makes true, each rule's verdict one
compiled expression over the conditions a paper fulfils, and the terms its why shows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain, repeat
from typing import cast

from paperwatch import query as q
from paperwatch.rules import FIELDS, PROBE_STEP, Rule, Term
from paperwatch.scan import Hits

# What a why can show of one term: each of its fields as (hit key, label, field), in the order of FIELDS.
Shown = tuple[tuple[int, str, str], ...]


# Given the conditions a paper fulfils and its upvotes, None if a rule does not match it, else
# whether its why shows the query's terms too.
Verdict = Callable[[set[int], int], bool | None]


@dataclass(frozen=True, slots=True)
class Plan:
    """A rule as the matcher evaluates it."""

    reader: str
    name: str
    simple: bool  # keywords, authors, organizations only: it matches whenever one of them is found
    verdict: Verdict
    shown: tuple[Shown, Shown]  # what its why shows: without, then with the query's terms


class Conditions:
    """Each distinct term condition (a probe, in some fields) numbered once for every rule, and
    what each hit key makes true: the conditions it fulfils (negative numbers) and the matcher's
    slots of the rules it may make match (``match._Rules``). A paper's are one set, built in C."""

    def __init__(self) -> None:
        self.ids: dict[tuple[int, frozenset[str]], int] = {}
        self.by_key: dict[int, list[int]] = {}

    def of(self, term: Term) -> int:
        condition = self.ids.get((term.probe, term.fields))
        if condition is None:
            condition = self.ids[term.probe, term.fields] = -1 - len(self.ids)
            for key in term.keys:
                self.by_key.setdefault(key, []).append(condition)
        return condition

    def trigger(self, key: int, slot: int) -> None:
        made = self.by_key.setdefault(key, [])
        if slot not in made:
            made.append(slot)

    def true(self, hits: Hits) -> set[int]:
        return set(chain.from_iterable(map(self.by_key.get, hits, repeat(()))))


def plan_rules(rules: list[Rule], conditions: Conditions) -> list[Plan]:
    """Each rule as the matcher evaluates it. Rules alike but for their terms and upvotes share
    the verdict's code: each shape is compiled once, all in one go (compiling costs the parser's
    start-up each time, and 1,400 verdicts compiled one by one took 0.1 s), and each rule's verdict
    is its shape given its conditions."""
    verdicts = [None if _simple(rule) else _verdict_shape(rule, conditions) for rule in rules]
    shapes = list(dict.fromkeys(shape for shape, _values in filter(None, verdicts)))
    makers = dict(zip(shapes, _compiled(shapes), strict=True))
    return [Plan(rule.reader, rule.name, verdict is None,
                 matches_when_triggered if verdict is None else makers[verdict[0]](*verdict[1]), _shown(rule))
            for rule, verdict in zip(rules, verdicts, strict=True)]


def _compiled(shapes: list[tuple[str, int]]) -> list[Callable[..., Verdict]]:
    """For each shape (an expression over ``v0``, ``v1``, ... and how many), a function making
    its verdict from those values, which the verdict holds as defaults: read as fast as constants."""
    def maker(source: str, count: int) -> str:
        values = ", ".join(f"v{n}" for n in range(count))
        return f"lambda {values}: lambda held, upvotes, {', '.join(f'v{n}=v{n}' for n in range(count))}: {source}"

    if not shapes:
        return []
    return cast(list[Callable[..., Verdict]],
                eval("[" + ", ".join(maker(*shape) for shape in shapes) + "]", {"__builtins__": {}}))


def _simple(rule: Rule) -> bool:
    """Whether only what makes the rule match counts: no condition of its own to check."""
    return not (rule.all_of or rule.none_of or rule.query is not None or rule.min_upvotes > 0)


def _shown(rule: Rule) -> tuple[Shown, Shown]:
    def shown(terms: Iterable[Term]) -> Shown:
        pairs = ((key, term.label, FIELDS[key % PROBE_STEP]) for term in terms for key in term.keys)
        return tuple(dict.fromkeys(pairs))  # a term listed twice shows its hits once

    return shown((*rule.any_of, *rule.all_of)), shown((*rule.any_of, *rule.all_of, *rule.positive()))


def matches_when_triggered(held: set[int], upvotes: int) -> bool | None:
    return False if upvotes >= 0 else None


def _verdict_shape(rule: Rule, conditions: Conditions) -> tuple[tuple[str, int], list[int]]:
    """A rule's verdict as one Python expression over ``held`` and ``upvotes``, with its numbers
    (the least upvotes, the conditions) as ``v0``, ``v1``, ...: checking a few thousand rules'
    conditions for each paper, one call each costs less than a call per term."""
    values = [rule.min_upvotes]

    def value(term: Term) -> str:
        values.append(conditions.of(term))
        return f"v{len(values) - 1} in held"

    def held(terms: Iterable[Term], joiner: str) -> str:
        return "(" + joiner.join(value(term) for term in terms) + ")"

    fails = ["upvotes < v0"]
    if rule.all_of:
        fails.append("not " + held(rule.all_of, " and "))
    if rule.none_of:
        fails.append(held(rule.none_of, " or "))
    verdict = f"False if {held(rule.any_of, ' or ')} else None" if rule.any_of else "None"
    if rule.query is not None:
        query_terms = rule.query_terms
        holds = q.query_source(rule.query, lambda t: value(query_terms[t]))
        verdict = f"True if ({holds}) else {verdict}"
    return (f"None if {' or '.join(fails)} else {verdict}", len(values)), values
