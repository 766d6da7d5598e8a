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
    what each hit key makes true: the conditions it fulfils (negative numbers) and the rules it
    may make match (their indices). A paper's are one set, built in C."""

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

    def trigger(self, key: int, rule: int) -> None:
        made = self.by_key.setdefault(key, [])
        if rule not in made:
            made.append(rule)

    def true(self, hits: Hits) -> set[int]:
        return set(chain.from_iterable(map(self.by_key.get, hits, repeat(()))))


def plan_rules(rules: list[Rule], conditions: Conditions) -> list[Plan]:
    """Each rule as the matcher evaluates it; the verdicts of all compiled together, as one list
    of functions (compiling each alone costs the parser's start-up each time)."""
    sources = [None if _simple(rule) else _verdict_source(rule, conditions) for rule in rules]
    compiled = iter(eval("[" + ", ".join(f"lambda held, upvotes: {source}" for source in sources if source) + "]",
                         {"__builtins__": {}}) if any(sources) else ())
    return [Plan(rule.reader, rule.name, source is None,
                 matches_when_triggered if source is None else cast(Verdict, next(compiled)), _shown(rule))
            for rule, source in zip(rules, sources, strict=True)]


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


def _verdict_source(rule: Rule, conditions: Conditions) -> str:
    """A rule's verdict as one Python expression over ``held`` and ``upvotes``: checking a few
    thousand rules' conditions for each paper, one call each costs less than a call per term."""
    def held(terms: Iterable[Term], joiner: str) -> str:
        return "(" + joiner.join(f"{conditions.of(term)} in held" for term in terms) + ")"

    fails = [f"upvotes < {rule.min_upvotes}"]
    if rule.all_of:
        fails.append("not " + held(rule.all_of, " and "))
    if rule.none_of:
        fails.append(held(rule.none_of, " or "))
    verdict = f"False if {held(rule.any_of, ' or ')} else None" if rule.any_of else "None"
    if rule.query is not None:
        query_terms = rule.query_terms
        holds = q.query_source(rule.query, lambda t: f"{conditions.of(query_terms[t])} in held")
        verdict = f"True if ({holds}) else {verdict}"
    return f"None if {' or '.join(fails)} else {verdict}"
