"""Reader rules → matches, each with the words and authors that made it.

Rules are compiled once (``paperwatch.rules``): every keyword, phrase and wildcard of every
rule (and of every query) goes into one token trie, authors into a surname index,
organizations into a dict. A paper is then scanned once (``paperwatch.scan``): each field
folded and tokenized, its tokens walked through the trie in a single pass. What it holds is a
set of hits, each a probe in a field; each term of each rule is a condition on those, held or
not, decided once per paper for every rule that shares it (``paperwatch.plans``). Only rules
a hit can make match (and the rare rule whose query holds without any, such as ``NOT
survey``) are evaluated, and one asking for nothing but keywords, authors or organizations
matches as soon as one of them is found. Time grows with the papers' text, not with the
number of rules. ``match --json`` takes ``Matcher.encoded``: the same objects as
``Match.as_json``, encoded as they are found, each hit's text once per paper and each rule's
constant parts once per process.

Semantics, as the README states them:

* Text is compared folded: case-insensitive, accents dropped, ligatures expanded
  (``naïve`` = ``naive``, ``ﬁne`` = ``fine``), every dash a hyphen.
* A keyword matches whole words only (``GAN`` never matches ``organ``). Hyphen, space and
  nothing are the same between a keyword's words (``pre-training`` = ``pre training`` =
  ``pretraining``); a hyphenated word in a paper also counts as the joined word, so the
  keyword ``pretraining`` finds ``pre-training`` (but not ``pre training``).
* A keyword also matches its regular English plural: ``network`` → ``networks``,
  ``study`` → ``studies``, ``box`` → ``boxes``; in a phrase, only the last word's. The
  plural form itself does not find the singular.
* ``diffus*`` matches any word starting with ``diffus`` (at least two letters before ``*``).
* Several words, quoted or not, form a phrase: in order and adjacent. Other punctuation
  between the words is ignored, but a phrase never spans the end of a sentence or clause
  (``.``, ``,``, ``;``, ``:``, ``!``, ``?`` before a space) or a bracket.
* ``re:PATTERN`` is a regular expression searched case-insensitively in the folded field
  text (punctuation kept); it must compile and must not match empty text (``\\b``, ``x*``):
  a hit is at least one character. Query terms are never regular expressions.
* Keywords, ``all`` and ``exclude`` look at title, abstract and AI keywords unless the rule
  names its ``fields`` (also ``authors`` and ``organization``, as plain text).
* An author pattern matches one author of the paper, never part of a name or parts of two:
  the surnames must be equal (case, accents, apostrophes and hyphens aside; ``von``,
  ``de``, ``le``… before a surname may be written or left out), the first given names must
  agree, an initial agreeing with any name it begins (``Y. LeCun`` = ``Yann LeCun``), and
  middle names are optional, but must agree where both sides give them. A pattern of one
  word is a surname: ``Yu`` matches ``Wei Yu`` but neither ``Yujia Li`` nor ``Yu Zhang``.
  A pattern is one author, given names first (``Y.LeCun`` too); no commas, no ``*``.
* An organization matches the paper's whole organization name, folded, spaces ignored.
* A rule matches when any of keywords, authors, organizations or query matches, every
  ``all`` term matches, no ``exclude`` term does, and upvotes ≥ ``min_upvotes``. Its
  why lists the hits of keywords, authors, organizations and ``all``, and the positive
  terms of its query when the query holds.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from paperwatch.errors import RuleError
from paperwatch.models import Paper
from paperwatch.patterns import required_text
from paperwatch.plans import Conditions, Plan, Shown, Verdict, plan_rules
from paperwatch.rules import (
    DEFAULT_FIELDS,
    FIELDS,
    PROBE_STEP,
    Builder,
    Rule,
    RuleSpec,
    compile_rules,
    rule_problems,
)
from paperwatch.scan import Hits, Scanner, Spot
from paperwatch.tokens import Text

__all__ = ["DEFAULT_FIELDS", "FIELDS", "Hit", "Match", "Matcher", "RuleSpec", "required_text", "rule_problems"]

log = logging.getLogger(__name__)

_RECENT_PAPERS = 512  # scanned papers remembered: a few days of the site
# The string encoder json.dumps(..., ensure_ascii=False) uses: ``match --json`` writes what that would write.
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


@dataclass(frozen=True, slots=True)
class Hit:
    """One reason for a match: ``term`` as the rule wrote it, found in ``field`` as ``text``."""

    rule: str
    term: str
    field: str
    text: str


@dataclass(frozen=True, slots=True)
class Match:
    """A paper one reader's rules matched: every rule that matched it and every hit."""

    reader: str
    paper_id: str
    rules: tuple[str, ...]
    why: tuple[Hit, ...]

    def as_json(self) -> dict[str, object]:
        """The ``match --json`` shape of interface.md."""
        return {
            "reader": self.reader,
            "paper": self.paper_id,
            "rules": list(self.rules),
            "why": [{"rule": h.rule, "field": h.field, "term": h.term, "text": h.text} for h in self.why],
        }


_Heads = tuple[tuple[int, str], ...]  # each hit key a why shows, and the start of its hit's JSON object


def _hit_text(spot: Spot, key: int, texts: dict[str, Text]) -> str:
    if isinstance(spot, str):
        return texts[FIELDS[key % PROBE_STEP]].first(spot)
    if len(spot) == 2:
        return texts[FIELDS[key % PROBE_STEP]].words(*spot)
    return spot[0]


class _EncodedTexts(dict[int, str]):
    """Each hit's text as ``match --json`` ends a hit with it, encoded once per paper for every reader."""

    __slots__ = ("_hits", "_texts")

    def __init__(self, hits: Hits, texts: dict[str, Text]) -> None:
        super().__init__()
        self._hits, self._texts = hits, texts

    def __missing__(self, key: int) -> str:
        encoded = self[key] = _encode_string(_hit_text(self._hits[key], key, self._texts)) + "}"
        return encoded


# A rule with a verdict as ``match --json`` needs it: its verdict, and, without and with the
# query's terms, each hit key its why shows with the start of the hit's JSON object, and whether
# two of those can be the same (two terms of one label and field).
_RuleJson = tuple[Verdict, tuple[_Heads, _Heads], tuple[bool, bool]]
# A slot as ``match --json`` needs it: its rule's index, reader and encoded name, and the hit key
# it shows with the start of the hit's JSON object ("" in the slot of a rule with a verdict).
_SlotJson = tuple[int, str, str, int, str]
_Json = tuple[list[_SlotJson], dict[int, _RuleJson]]


def _json(rules: _Rules) -> _Json:
    """What ``Match.as_json`` encodes of each slot and of each rule with a verdict that is the same for every paper."""
    names = [_encode_string(plan.name) for plan in rules.plans]

    def heads(index: int, shown: Shown) -> _Heads:
        return tuple(dict.fromkeys((key, '{"rule": ' + names[index] + ', "field": ' + _encode_string(field_name)
                                    + ', "term": ' + _encode_string(label) + ', "text": ')
                                   for key, label, field_name in shown))

    slots: list[_SlotJson] = []
    verdicts: dict[int, _RuleJson] = {}
    for index, place in rules.slots:
        plan = rules.plans[index]
        if place < 0:
            pairs = (heads(index, plan.shown[0]), heads(index, plan.shown[1]))
            verdicts[index] = (plan.verdict, pairs, (_shows_alike(plan.shown[0]), _shows_alike(plan.shown[1])))
            slots.append((index, plan.reader, names[index], -1, ""))
        else:
            if place == 0:  # a rule's slots are its shown terms', in order
                shown = heads(index, plan.shown[0])
            key, head = shown[place]
            slots.append((index, plan.reader, names[index], key, head))
    return slots, verdicts


def _explain(reader: str, rules: list[tuple[str, Shown]], paper_id: str, hits: Hits,
             texts: dict[str, Text]) -> Match:
    # An ordered set of (rule, term, field, text): a term two rules share is one hit per rule.
    # Only terms with a hit are looked at, and each text is cut once per paper (``Text.words``).
    why: dict[tuple[str, str, str, str], None] = {}
    for rule, shown in rules:
        for key, label, field_name in shown:
            spot = hits.get(key)
            if spot is not None:
                why[rule, label, field_name, _hit_text(spot, key, texts)] = None
    return Match(reader, paper_id, tuple(rule for rule, _ in rules), tuple(map(_hit, why)))


_HITS: dict[tuple[str, str, str, str], Hit] = {}
_HITS_LIMIT = 20_000


def _hit(key: tuple[str, str, str, str]) -> Hit:
    """The Hit record for ``key``, shared: the same rule finds the same words in paper after paper."""
    hit = _HITS.get(key)
    if hit is None:
        if len(_HITS) >= _HITS_LIMIT:
            _HITS.clear()
        hit = _HITS[key] = Hit(*key)
    return hit


class _Rules:
    """The rules as the matcher evaluates them, and the scanner of their probes: built when first
    needed, as a matcher made only to check a config never is.

    Each rule has slots, numbered reader by reader (readers in the order their first rules come,
    each one's rules in order): a rule that matches whenever one of the terms it shows is found
    (most) has a slot for each of them, which that term's hit keys make true, and its matches
    need no verdict; any other rule has one, which its triggers make true, and its verdict is
    decided. A paper's slots, in order, are its candidate rules in that order, and each slot of a
    rule that matches without a verdict is one hit of its why."""

    __slots__ = ("always", "by_reader", "conditions", "json", "plans", "scanner", "slots")

    def __init__(self, rules: list[Rule], builder: Builder) -> None:
        self.conditions = Conditions()
        self.plans = plan_rules(rules, self.conditions)
        self.slots: list[tuple[int, int]] = []  # each slot's rule, and the place of the hit it shows (-1: none)
        self.by_reader: dict[str, frozenset[int]] = {}
        always = []
        rules_of: dict[str, list[int]] = {}  # each reader's rules, readers in the order they first come
        for index, rule in enumerate(rules):
            rules_of.setdefault(rule.reader, []).append(index)
        for reader, indices in rules_of.items():
            start = len(self.slots)
            for index in indices:
                first, plan = len(self.slots), self.plans[index]
                if _without_verdict(plan):
                    for place, (key, _label, _field) in enumerate(plan.shown[0]):
                        self.conditions.trigger(key, first + place)
                        self.slots.append((index, place))
                    continue
                self.slots.append((index, -1))
                triggers = rules[index].triggers()
                if triggers is None:
                    always.append(first)
                for term in triggers or ():
                    for key in term.keys:
                        self.conditions.trigger(key, first)
            self.by_reader[reader] = frozenset(range(start, len(self.slots)))
        self.always = frozenset(always)
        self.json: _Json | None = None  # made when first asked for
        self.scanner = Scanner(builder, *_looked_at(rules, builder))

    def candidates(self, held: set[int], upvotes: int, allowed: frozenset[int] | None) -> list[int]:
        """Of what a paper's hits make true (``held``), the slots of the rules they may make
        match, and of those that may match without a hit, in order."""
        if self.always:
            held |= self.always
        slots = sorted(held if allowed is None else held & allowed)
        del slots[: bisect_left(slots, 0)]  # the conditions
        if upvotes < 0:  # a paper no rule without a verdict matches
            slots = [slot for slot in slots if self.slots[slot][1] < 0]
        return slots


def _without_verdict(plan: Plan) -> bool:
    """Whether ``plan`` matches with each hit it shows, each shown once."""
    return plan.simple and not _shows_alike(plan.shown[0])


def _shows_alike(shown: Shown) -> bool:
    """Whether two of the terms shown can show the same hit: one label, one field, two hit keys."""
    return len({(label, field) for _key, label, field in shown}) < len(shown)


class Matcher:
    """Rules compiled once; ``match`` scans each field of a paper once, whatever the number of rules."""

    def __init__(self, rules: list[Rule], builder: Builder) -> None:
        self._compiled: tuple[list[Rule], Builder] = (rules, builder)
        self._built: _Rules | None = None
        # What a paper's text holds, by text: a digest for each of many readers looks at the same papers.
        self._recent: OrderedDict[tuple[object, ...], tuple[dict[str, Text], Hits]] = OrderedDict()
        log.debug("compiled %d rules: %d words and phrases, %d regexes, %d author surnames",
                  len(rules), len(builder.words), len(builder.regexes), len(builder.authors))

    @classmethod
    def compile(cls, rules: Iterable[RuleSpec]) -> Matcher:
        """Compile ``rules``; raise ConfigError listing every mistake in every rule, one per line."""
        builder = Builder()
        compiled = compile_rules(builder, rules)
        if builder.problems:
            raise RuleError(builder.problems)
        return cls(compiled, builder)

    def build(self) -> None:
        """Build the tables ``match`` looks in now, not at the first paper: a daemon's first
        digest then pays nothing, and a run sets them aside with the config (``collector.kept``)."""
        self._rules()

    def _rules(self) -> _Rules:
        built = self._built
        if built is None:
            built = self._built = _Rules(*self._compiled)
        return built

    def match(self, paper: Paper, *, reader: str | None = None) -> list[Match]:
        """One Match per reader with a rule matching ``paper`` (only ``reader``'s, if given),
        readers in the order their first rules come in."""
        rules = self._rules()
        texts, hits = self._scanned(paper, rules.scanner)
        allowed = None if reader is None else rules.by_reader.get(reader, frozenset())
        by_reader: dict[str, list[tuple[str, Shown]]] = {}
        held, upvotes = rules.conditions.true(hits), paper.upvotes or 0
        last = -1
        for slot in rules.candidates(held, upvotes, allowed):
            index = rules.slots[slot][0]
            if index != last:  # a rule's first slot: its others say no more
                last = index
                plan = rules.plans[index]
                verdict = plan.verdict(held, upvotes)
                if verdict is not None:
                    by_reader.setdefault(plan.reader, []).append((plan.name, plan.shown[verdict]))
        return [_explain(reader, shown, paper.id, hits, texts) for reader, shown in by_reader.items()]

    def match_all(self, papers: Iterable[Paper]) -> list[Match]:
        """The matches of every paper, in paper order."""
        return [found for paper in papers for found in self.match(paper)]

    def _scanned(self, paper: Paper, scanner: Scanner) -> tuple[dict[str, Text], Hits]:
        """The paper's fields tokenized and what they hold; remembered for the last papers seen."""
        key = (paper.title, paper.summary, paper.authors, paper.ai_keywords, paper.organization)
        known = self._recent.get(key)
        if known is not None:
            self._recent.move_to_end(key)
            return known
        known = self._recent[key] = scanner.scan(paper)
        if len(self._recent) > _RECENT_PAPERS:
            self._recent.popitem(last=False)
        return known

    def encoded(self, papers: Iterable[Paper], readers: Collection[str] | None = None) -> dict[str, list[str]]:
        """What ``Match.as_json`` and the paper's title give for each match of ``papers`` (of
        ``readers`` only, if given), encoded as JSON, by reader in paper order.

        The same objects ``match`` describes, without a Match or Hit per result: each hit's
        text is encoded once per paper for every reader, each rule's terms once per process."""
        rules = self._rules()
        if rules.json is None:
            rules.json = _json(rules)
        allowed = None
        if readers is not None and not rules.by_reader.keys() <= set(readers):
            allowed = frozenset().union(*(slots for reader, slots in rules.by_reader.items() if reader in readers))
        out: dict[str, list[str]] = {reader: [] for reader in rules.by_reader}
        heads = {reader: '{"reader": ' + _encode_string(reader) for reader in rules.by_reader}
        for paper in papers:
            # Each paper once: no need to remember it (``_scanned``) for other readers.
            matched = _encode_rules(rules, paper, *rules.scanner.scan(paper), allowed)
            if matched:
                paper_id = ', "paper": ' + _encode_string(paper.id) + ', "rules": ['
                title = '], "title": ' + _encode_string(paper.title) + "}"
                for reader, names, why in matched:
                    out[reader].append(f'{heads[reader]}{paper_id}{", ".join(names)}], "why": [{", ".join(why)}{title}')
        return {reader: lines for reader, lines in out.items() if lines}


def _encode_rules(rules: _Rules, paper: Paper, texts: dict[str, Text], hits: Hits,
                  allowed: frozenset[int] | None) -> list[tuple[str, list[str], list[str]]]:
    """Each reader with rules matching the paper, their names (encoded) and their hits (encoded objects)."""
    upvotes, (slots, verdicts) = paper.upvotes or 0, rules.json or ([], {})
    held = rules.conditions.true(hits)
    encoded = _EncodedTexts(hits, texts)
    matched: list[tuple[str, list[str], list[str]]] = []
    last, last_reader, names, found = -1, None, [], []
    for slot in rules.candidates(held, upvotes, allowed):  # a reader's slots are next to each other
        index, reader, name, key, head = slots[slot]
        if index == last:  # another hit of the rule just matched
            found.append(head + encoded[key])
            continue
        last = index
        shown = None
        if not head:  # a rule with a verdict
            decide, pairs, repeats = verdicts[index]
            verdict = decide(held, upvotes)
            if verdict is None:
                continue
            shown = _shown(pairs[verdict], repeats[verdict], hits, encoded)
        if reader != last_reader:
            last_reader, names, found = reader, [name], []
            matched.append((reader, names, found))
        else:
            names.append(name)
        if shown is None:
            found.append(head + encoded[key])
        else:
            found += shown
    return matched


def _shown(pairs: _Heads, repeats: bool, hits: Hits, encoded: _EncodedTexts) -> list[str]:
    """The hits a rule with a verdict shows (encoded objects): those of ``pairs`` found, each once."""
    found = [head + encoded[key] for key, head in pairs if key in hits]
    return list(dict.fromkeys(found)) if repeats else found


def _looked_at(rules: list[Rule], builder: Builder) -> tuple[set[str], dict[int, set[str]]]:
    """The fields some word or regex term looks at (only those are read), and each regex's."""
    word_probes = set(builder.words.values())
    regex_fields: dict[int, set[str]] = {probe: set() for probe, _ in builder.regexes.values()}
    scanned: set[str] = set()
    for rule in rules:
        for term in rule.terms():
            if term.probe in word_probes:
                scanned |= term.fields
            elif term.probe in regex_fields:
                regex_fields[term.probe] |= term.fields
                scanned |= term.fields
    return scanned, regex_fields
