"""Reader rules → matches, each with the words and authors that made it.

Rules are compiled once: every keyword, phrase and wildcard of every rule (and of every
query) goes into one token trie, authors into a surname index, organizations into a dict.
A paper is then folded and tokenized once per field and its tokens are walked through the
trie in a single pass; only rules with a hit (and the rare rule whose query holds without
any, such as ``NOT survey``) are evaluated. Time grows with the papers' text, not with the
number of rules. An Aho-Corasick pass over each field comes first: a field holding no first
word of any term is skipped, and one whose only hits are single words that start no longer
term is read from that pass alone. ``match --json`` takes ``Matcher.encoded``: the same
objects as ``Match.as_json``, encoded as they are found, each hit's text once per paper.

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

import bisect
import difflib
import itertools
import json
import logging
import operator
import re
import unicodedata
import warnings
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate, compress, repeat
from typing import Any, Protocol, cast

import ahocorasick

from paperwatch import query as q
from paperwatch.errors import RuleError, RuleProblem
from paperwatch.folding import fold, fold_char, plural
from paperwatch.models import Paper
from paperwatch.names import name_forms, organization_key, same_given_names

log = logging.getLogger(__name__)

FIELDS = ("title", "abstract", "ai_keywords", "authors", "organization")
DEFAULT_FIELDS = ("title", "abstract", "ai_keywords")
MAX_PHRASE_WORDS = 8
_QUERY_FIELDS = {"title": "title", "abstract": "abstract", "ai_keywords": "ai_keywords"}
_MAX_COMPOUND = 8  # a hyphenated run longer than this is noise; only its first parts are joined
_MEMO_LIMIT = 200_000
_RECENT_PAPERS = 512  # scanned papers remembered: a few days of the site

# Folded text → words, hyphenated words kept whole, and "" for a break a phrase may not span.
_COMPOUND_OR_BREAK = re.compile(r"([^\W_]+(?:-[^\W_]+)*)|[.,;:!?](?=\s|$)|[()\[\]{}]")
_PIECE_OR_BREAK = re.compile(r"([^\W_]+|[.,;:!?](?=\s|$)|[()\[\]{}])")  # the same tokens, for offsets
_KEYWORD_WORD = re.compile(r"([^\W_]+)(\*)?")
_SPECIAL = frozenset(".^$*+?{}[]\\|()")
_ESCAPE = re.compile(r"\\.", re.DOTALL)
# The whole of an escape (\x41, \u00e9, \N{...}, \12) and of a counted repeat ({2}, {1,3}): their
# digits and letters are not literal text. Reaching too far is safe: it only shortens a run.
_ESCAPE_SPAN = re.compile(r"\\(?:x[0-9a-fA-F]{0,2}|u[0-9a-fA-F]{0,4}|U[0-9a-fA-F]{0,8}|N\{[^}]*\}?|\d{1,3}|.)",
                          re.DOTALL)
_REPEAT = re.compile(r"\{\d*(?:,\d*)?\}")
_EMPTY_PROBES = ("", "a", "a b", "ab-cd. 12")  # a regex that matches empty text in these does so everywhere
_STRAY_STAR = re.compile(r"(?<![^\W_])\*|\*(?=[^\W_*])|\*\*")
# The string encoder json.dumps(..., ensure_ascii=False) uses: the fast path of ``match --json``
# writes what that would write.
_encode_string: Callable[[str], str] = json.encoder.encode_basestring



# --- public types -------------------------------------------------------------------------


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


# --- tokens (folding: paperwatch.folding) --------------------------------------------------


class _Text:
    """One field of one paper, folded and tokenized; offsets back to the original on demand."""

    __slots__ = ("_cuts", "_ends", "_origin", "folded", "joins", "original", "tokens")

    def __init__(self, original: str) -> None:
        self.original = original
        self.folded = fold(original)
        # Tokenized on demand (``tokenize``): most fields of most papers hold no word of a rule.
        self.tokens: list[str] = []
        self.joins: dict[int, list[tuple[str, int]]] = {}
        self._ends: list[int] | None = None
        self._cuts: dict[tuple[int, int], str] = {}
        self._origin: list[int] | None = None  # folded offset -> original offset; [] when they agree

    def tokenize(self) -> None:
        items = _COMPOUND_OR_BREAK.findall(self.folded)
        # Splitting the hyphenated items in C keeps this fast; "" items (breaks) survive as "".
        self.tokens = " ".join(items).replace("-", " ").split(" ") if items else []
        self.joins = _joins(items) if "-" in self.folded else {}

    def words(self, first: int, last: int) -> str:
        """The original text of tokens ``first`` to ``last`` (inclusive); cut once per paper,
        however many readers' matches show it."""
        cut = self._cuts.get((first, last))
        if cut is not None:
            return cut
        if self._ends is None:
            # split() alternates gap, token, gap, token...: token k spans ends[2k] to ends[2k + 1]
            self._ends = list(accumulate(map(len, _PIECE_OR_BREAK.split(self.folded))))
        cut = self._cuts[first, last] = self.chars(self._ends[2 * first], self._ends[2 * last + 1])
        return cut

    def chars(self, start: int, end: int) -> str:
        """The original text of the folded text's ``[start:end]``."""
        origin = self._origin
        if origin is None:
            same = len(self.folded) == len(self.original) and self.original.isascii()
            origin = self._origin = [] if same else [i for i, char in enumerate(self.original) for _ in fold_char(char)]
        if not origin:
            return self.original[start:end]
        return self.original[origin[start] : origin[end - 1] + 1]


def _joins(items: list[str]) -> dict[int, list[tuple[str, int]]]:
    """For each token that starts a hyphenated run, the joined words it starts and their last token."""
    joins: dict[int, list[tuple[str, int]]] = {}
    extra = 0  # tokens added before this item by splitting earlier items
    for position in compress(itertools.count(), map(operator.contains, items, repeat("-"))):  # in C: most have none
        parts = items[position].split("-")
        first, count = position + extra, min(len(parts), _MAX_COMPOUND)
        if count == 2:  # most compounds: one joined word
            joins[first] = [(parts[0] + parts[1], first + 1)]
            extra += 1
            continue
        for a in range(count - 1):
            joins[first + a] = [("".join(parts[a : b + 1]), first + b) for b in range(a + 1, count)]
        extra += len(parts) - 1
    return joins


# --- keywords → token sequences --------------------------------------------------------------

Step = tuple[str, bool]  # a token, and whether it is a prefix (``diffus*``)


def keyword_words(text: str) -> tuple[Step, ...]:
    """A keyword's folded words, each with its wildcard flag; ValueError says what is wrong."""
    folded = fold(text.strip())
    if len(folded) > 1 and folded[0] == folded[-1] == '"':
        folded = folded[1:-1]
    if _STRAY_STAR.search(folded):
        raise ValueError(f"{text!r}: '*' may only end a word, as in diffus*")
    words = tuple((word, bool(star)) for word, star in _KEYWORD_WORD.findall(folded))
    if not words:
        raise ValueError(f"{text!r} has no words to match")
    if len(words) > MAX_PHRASE_WORDS:
        raise ValueError(f"{text!r} has more than {MAX_PHRASE_WORDS} words")
    if any(star and len(word) < 2 for word, star in words):
        raise ValueError(f"{text!r}: give at least two letters before '*'")
    return words


def spellings(words: tuple[Step, ...]) -> Iterator[tuple[Step, ...]]:
    """Every token sequence the words may appear as: each gap split or joined, last word plural."""
    gaps = len(words) - 1
    for mask in range(2**gaps):
        pieces = [words[0]]
        for gap, (word, star) in enumerate(words[1:]):
            before, before_star = pieces[-1]
            if mask >> gap & 1 and not before_star:
                pieces[-1] = (before + word, star)
            elif mask >> gap & 1:
                break  # nothing can be glued after a wildcard
            else:
                pieces.append((word, star))
        else:
            yield tuple(pieces)
            last, star = pieces[-1]
            if not star and last[-1].isalpha():
                yield (*pieces[:-1], (plural(last), False))


class _Node:
    """A trie node: children by exact token and by prefix, and the probes ending here."""

    __slots__ = ("ends", "exact", "inner", "lengths", "prefixes")

    def __init__(self) -> None:
        self.exact: dict[str, _Node] = {}
        self.prefixes: dict[str, _Node] = {}
        self.lengths: tuple[int, ...] = ()
        self.ends: list[int] = []
        self.inner = False  # has children: a phrase may go on from here

    def add(self, step: Step) -> _Node:
        token, star = step
        self.inner = True
        if not star:
            return self.exact.setdefault(token, _Node())
        if len(token) not in self.lengths:
            self.lengths = tuple(sorted({*self.lengths, len(token)}))
        return self.prefixes.setdefault(token, _Node())

    def step(self, token: str) -> list[_Node]:
        found = [self.exact[token]] if token in self.exact else []
        for length in self.lengths:
            child = self.prefixes.get(token[:length]) if len(token) >= length else None
            if child is not None:
                found.append(child)
        return found


# --- regular expressions (names: paperwatch.names) ----------------------------------------

def required_text(pattern: re.Pattern[str]) -> str:
    """The longest text every match of ``pattern`` contains, "" if unsure: a cheap prefilter.

    Only literal runs outside groups, classes and escapes count, so alternation, optional
    parts and the character a quantifier governs never do."""
    if pattern.flags & re.VERBOSE:
        return ""
    source, runs, run, depth, index = pattern.pattern, [""], "", 0, 0
    while index < len(source):
        char = source[index]
        if char == "|" and depth == 0:
            return ""
        if char in _SPECIAL:
            repeat = _REPEAT.match(source, index) if char == "{" else None
            if (char in "*+?" or repeat) and run:
                run = run[:-1]
            runs.append(run)
            run = ""
            depth += {"(": 1, ")": -1}.get(char, 0)
            index = _special_end(source, index, repeat)
            continue
        if depth == 0:
            run += char
        index += 1
    longest = max([*runs, run], key=len)
    if pattern.flags & re.IGNORECASE:
        return longest.lower() if longest.isascii() else ""
    return longest


def _special_end(source: str, index: int, repeat: re.Match[str] | None) -> int:
    """The index after the special character (or class, escape, counted repeat) at ``index``."""
    if source[index] == "[":
        return _class_end(source, index)
    if source[index] == "\\":
        escape = _ESCAPE_SPAN.match(source, index)
        return escape.end() if escape else index + 2
    return repeat.end() if repeat else index + 1


def _class_end(source: str, start: int) -> int:
    """The index after the character class that starts at ``start``."""
    index = start + 1
    index += source.startswith("^", index)
    index += source.startswith("]", index)
    while index < len(source) and source[index] != "]":
        index += 2 if source[index] == "\\" else 1
    return index + 1


# --- compiled rules ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Term:
    label: str  # as the rule wrote it
    probe: int
    fields: frozenset[str]


Found = dict[int, dict[str, tuple[int, int] | str]]  # probe → field → token span or matched text


def _holds(term: _Term, found: Found) -> bool:
    where = found.get(term.probe)
    return where is not None and not term.fields.isdisjoint(where)


@dataclass(frozen=True, slots=True)
class _Rule:
    reader: str
    name: str
    any_of: tuple[_Term, ...]
    all_of: tuple[_Term, ...]
    none_of: tuple[_Term, ...]
    query: q.Node | None
    query_terms: dict[q.Term, _Term]
    min_upvotes: int

    def matches(self, found: Found, upvotes: int) -> bool:
        return self.explained(found, upvotes) is not None

    def explained(self, found: Found, upvotes: int) -> tuple[_Term, ...] | None:
        """The terms that can explain the match (as ``why``), or None if the rule does not
        match: the query is evaluated once for both."""
        if upvotes < self.min_upvotes:
            return None
        if not all(_holds(term, found) for term in self.all_of) or any(_holds(term, found) for term in self.none_of):
            return None
        if self.query is not None and self._query_holds(found):
            return (*self.any_of, *self.all_of, *(self.query_terms[t] for t in q.positive_terms(self.query)))
        if any(_holds(term, found) for term in self.any_of):
            return (*self.any_of, *self.all_of)
        return None

    def why(self, found: Found) -> Iterator[_Term]:
        """The terms that can explain a match: a query's only when the query holds."""
        yield from self.any_of
        yield from self.all_of
        if self.query is not None and self._query_holds(found):
            yield from (self.query_terms[t] for t in q.positive_terms(self.query))

    def _query_holds(self, found: Found) -> bool:
        return self.query is not None and q.evaluate(self.query, lambda t: _holds(self.query_terms[t], found))

    def terms(self) -> Iterator[_Term]:
        """Every term, including those that can only veto or confirm a match."""
        yield from self.any_of
        yield from self.all_of
        yield from self.none_of
        yield from self.query_terms.values()

    def triggers(self) -> Iterator[_Term]:
        """The terms whose hit can make the rule match, so the rule must then be evaluated."""
        yield from self.any_of
        yield from self.query_terms.values()

    def holds_without_hits(self) -> bool:
        """Whether the query holds for a paper with no hit at all (``NOT survey``)."""
        return self.query is not None and q.evaluate(self.query, lambda _term: False)


class _Report(Protocol):
    """Records one mistake in the rule being compiled, at ``key`` inside it."""

    def __call__(self, *key: str | int, message: str) -> None: ...


@dataclass
class _Builder:
    """Collects probes (distinct things to look for) shared by all rules, and the problems found."""

    trie: _Node = field(default_factory=_Node)
    words: dict[tuple[Step, ...], int] = field(default_factory=dict)
    regexes: dict[str, tuple[int, re.Pattern[str]]] = field(default_factory=dict)
    authors: dict[str, list[tuple[int, tuple[str, ...]]]] = field(default_factory=dict)
    author_probes: dict[str, int] = field(default_factory=dict)
    organizations: dict[str, int] = field(default_factory=dict)
    count: int = 0
    problems: list[RuleProblem] = field(default_factory=list)

    def _new(self) -> int:
        self.count += 1
        return self.count - 1

    def keyword(self, text: str, fields: frozenset[str]) -> _Term:
        if text.startswith("re:"):
            return _Term(text, self._regex(text[3:]), fields)
        return self.words_term(text, fields)

    def words_term(self, text: str, fields: frozenset[str]) -> _Term:
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
        return _Term(text, self.words[words], fields)

    def _regex(self, pattern: str) -> int:
        folded = "".join(c for c in unicodedata.normalize("NFKD", pattern) if not unicodedata.combining(c))
        if folded not in self.regexes:
            # The text is casefolded: without capitals, the pattern needs no IGNORECASE (10x faster).
            flags = re.IGNORECASE if any(c.isupper() for c in _ESCAPE.sub("", folded)) else 0
            try:
                with warnings.catch_warnings():
                    # "Possible nested set" and the like: valid today, and re's cache would warn only once.
                    warnings.simplefilter("ignore")
                    compiled = re.compile(folded, flags)
            except (re.error, OverflowError) as exc:  # a huge {n}
                raise ValueError(f"invalid regular expression {_shown(pattern)}: {exc}") from None
            except RecursionError:  # absurdly deep groups; CPython's own words vary between builds
                raise ValueError(f"invalid regular expression {_shown(pattern)}: groups nested too deeply") from None
            # Python's engine checked the syntax (its words are the clearer); RE2 runs it, in linear time.
            compiled = _linear(folded, compiled.flags, pattern)
            if any(hit.end() == hit.start() for probe in _EMPTY_PROBES for hit in compiled.finditer(probe)):
                # \b, x*, (?=a)...: a hit would show nothing, and most would hit every paper.
                raise ValueError(f"regular expression {_shown(pattern)} matches empty text, "
                                 "so it would match every paper")
            self.regexes[folded] = (self._new(), compiled)
        return self.regexes[folded][0]

    def author(self, text: str) -> _Term:
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
        return _Term(text, self.author_probes[key], frozenset({"authors"}))

    def organization(self, text: str) -> _Term:
        if "*" in text:
            raise ValueError(f"{text!r}: '*' is not supported in names: give the whole name")
        key = organization_key(text)
        if not key:
            raise ValueError(f"{text!r} is not an organization name")
        if key not in self.organizations:
            self.organizations[key] = self._new()
        return _Term(text, self.organizations[key], frozenset({"organization"}))

    def rule(self, spec: RuleSpec) -> _Rule | None:
        def problem(*key: str | int, message: str) -> None:
            self.problems.append(RuleProblem(spec.reader, spec.name, key, message))

        before = len(self.problems)
        fields = self._fields(spec, problem)

        def terms(key: str, texts: tuple[str, ...], make: Callable[[str], _Term]) -> tuple[_Term, ...]:
            made = []
            for index, text in enumerate(texts):
                try:
                    made.append(make(text))
                except ValueError as exc:
                    problem(key, index, message=str(exc))
            return tuple(made)

        def keyword(text: str) -> _Term:
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
        return _Rule(spec.reader, spec.name, any_of, all_of, none_of, parsed, query_terms, spec.min_upvotes)

    def _fields(self, spec: RuleSpec, problem: _Report) -> frozenset[str]:
        for index, name in enumerate(spec.fields):
            if name not in FIELDS:
                close = difflib.get_close_matches(name, FIELDS, n=1)
                hint = f", did you mean {close[0]}?" if close else f" (known: {', '.join(FIELDS)})"
                problem("fields", index, message=f"unknown field {name!r}{hint}")
        return frozenset(spec.fields or DEFAULT_FIELDS) & frozenset(FIELDS)

    def _query(self, spec: RuleSpec, problem: _Report,
               fields: frozenset[str]) -> tuple[q.Node | None, dict[q.Term, _Term]]:
        if spec.query is None:
            return None, {}
        try:
            parsed = q.parse(spec.query)
            made = {term: self._query_term(term, fields) for term in q.terms(parsed)}
        except q.QueryError as exc:
            problem("query", message=str(exc))
            return None, {}
        return parsed, made

    def _query_term(self, term: q.Term, fields: frozenset[str]) -> _Term:
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
        return _Term(str(term), made.probe, made.fields)


class _LinearPattern:
    """An RE2 expression with what the matcher reads of an ``re.Pattern``: its source, flags and searches.

    RE2 never backtracks: a search takes time linear in the text, whatever the expression, so
    one reader's ``(a+)+$`` cannot stall the process."""

    __slots__ = ("_compiled", "flags", "pattern")

    def __init__(self, source: str, flags: int, compiled: Any) -> None:
        self.pattern, self.flags, self._compiled = source, flags, compiled

    def search(self, text: str) -> re.Match[str] | None:
        return cast("re.Match[str] | None", self._compiled.search(text))

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        return cast("Iterator[re.Match[str]]", self._compiled.finditer(text))


# Python spellings RE2 writes otherwise; a doubled backslash is consumed first, so it stays.
_RE2_SPELLING = re.compile(r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(Z)|.)", re.DOTALL)
_LOOKAROUND = re.compile(r"\(\?<?[=!]")
_RE2_HINT = ("regular expressions here run in linear time, without backreferences or lookaround: "
             "match the words themselves, or use the rule's all and exclude")


def _re2_spelling(hit: re.Match[str]) -> str:
    code = hit.group(1) or hit.group(2)
    if code:
        return f"\\x{{{code}}}"
    return "\\z" if hit.group(3) else hit.group(0)


def _linear(folded: str, flags: int, pattern: str) -> re.Pattern[str]:
    """``folded`` compiled by RE2; ValueError naming what RE2 cannot express, with a hint."""
    bare = _ESCAPE.sub("", folded)  # escaped characters are literal: "\\(?=" is no lookahead
    if any(e.group()[1] in "123456789" for e in _ESCAPE.finditer(folded)) or "(?P=" in bare:
        raise ValueError(f"regular expression {_shown(pattern)} uses a backreference; {_RE2_HINT}")
    if _LOOKAROUND.search(bare):
        raise ValueError(f"regular expression {_shown(pattern)} uses lookahead or lookbehind; {_RE2_HINT}")
    # Loaded with the first re: rule, at start-up like the rest of the rules: a config without
    # regexes does not carry RE2 (a megabyte and a half) in a daemon that runs for months.
    import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

    options = re2.Options()
    options.log_errors = False  # the problem is reported once, in the config check's words
    options.case_sensitive = not flags & re.IGNORECASE
    source = _RE2_SPELLING.sub(_re2_spelling, folded)
    try:
        compiled = re2.compile(source, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"regular expression {_shown(pattern)} cannot run in linear time ({reason}); "
                         f"{_RE2_HINT}") from None
    # The matcher reads only pattern, flags, search and finditer, which _LinearPattern provides.
    return cast("re.Pattern[str]", _LinearPattern(folded, flags, compiled))


def _shown(text: str, limit: int = 30) -> str:
    """``text`` quoted for a message, cut short if it is long."""
    return repr(text) if len(text) <= limit else repr(text[:limit])[:-1] + "...'"


def rule_problems(rules: Iterable[RuleSpec]) -> list[RuleProblem]:
    """Every mistake in ``rules``, each saying where it is (``str`` of one is the line to show); [] if none."""
    builder = _Builder()
    _compile_rules(builder, rules)
    return builder.problems


def _compile_rules(builder: _Builder, rules: Iterable[RuleSpec]) -> list[_Rule]:
    compiled, seen = [], set()
    for spec in rules:
        if (spec.reader, spec.name) in seen:
            builder.problems.append(RuleProblem(spec.reader, spec.name, (), "two rules of one reader have this name"))
        seen.add((spec.reader, spec.name))
        rule = builder.rule(spec)
        if rule is not None:
            compiled.append(rule)
    return compiled


# --- matching ------------------------------------------------------------------------------


class Matcher:
    """Rules compiled once; ``match`` scans each field of a paper once, whatever the number of rules."""

    def __init__(self, rules: list[_Rule], builder: _Builder) -> None:
        self._rules = rules
        self._trie = builder.trie
        self._authors = builder.authors
        self._organizations = builder.organizations
        self._memo: dict[str, list[_Node]] = {}  # first trie step per token: most tokens repeat
        self._starters: set[str] = set()  # the tokens of the memo that start a trie path
        self._leaves: set[str] = set()  # the starters that are whole terms and start no longer one
        # Of the other starters: each with a token that can come next (as a pair), and those a
        # wildcard may continue: a later occurrence followed by none of these explains nothing.
        self._pairs: set[tuple[str, str]] = set()
        self._leaf_ends: dict[str, tuple[int, ...]] = {}  # each leaf's terms
        self._wild: set[str] = set()
        triggers: dict[int, list[int]] = {}
        for index, rule in enumerate(rules):
            for term in rule.triggers():
                if index not in triggers.setdefault(term.probe, []):
                    triggers[term.probe].append(index)
        self._triggers = triggers
        self._always = frozenset(i for i, rule in enumerate(rules) if rule.holds_without_hits())
        self._plans = [_plan(rule) for rule in rules]
        self._json: list[tuple[str, _Plan, str, tuple[_Heads, _Heads]]] | None = None  # each rule's JSON, made when first asked for
        self._firsts = _automaton(builder.trie)
        # The same, one reader's rules at a time: a digest asks for its reader's matches only.
        self._by_reader: dict[str, frozenset[int]] = {}
        self._reader_triggers: dict[str, dict[int, list[int]]] = {}
        for probe, indices in triggers.items():
            for index in indices:
                self._reader_triggers.setdefault(rules[index].reader, {}).setdefault(probe, []).append(index)
        for index, rule in enumerate(rules):
            self._by_reader[rule.reader] = self._by_reader.get(rule.reader, frozenset()) | {index}
        # What a paper's text holds, by text: a digest for each of many readers looks at the same papers.
        self._recent: OrderedDict[tuple[object, ...], tuple[dict[str, _Text], Found]] = OrderedDict()
        # Only the fields some word or regex term looks at are tokenized, each regex only where used.
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
        self._regexes = [(probe, rx, required_text(rx), tuple(name for name in FIELDS if name in regex_fields[probe]))
                         for probe, rx in builder.regexes.values()]
        self._fields = tuple(name for name in FIELDS if name in scanned)
        log.debug("compiled %d rules: %d words and phrases, %d regexes, %d author surnames",
                  len(rules), len(builder.words), len(builder.regexes), len(builder.authors))

    @classmethod
    def compile(cls, rules: Iterable[RuleSpec]) -> Matcher:
        """Compile ``rules``; raise ConfigError listing every mistake in every rule, one per line."""
        builder = _Builder()
        compiled = _compile_rules(builder, rules)
        if builder.problems:
            raise RuleError(builder.problems)
        return cls(compiled, builder)

    def match(self, paper: Paper, *, reader: str | None = None) -> list[Match]:
        """One Match per reader with a rule matching ``paper`` (only ``reader``'s, if given),
        readers in the order of their rules."""
        texts, found = self._scanned(paper)
        if reader is None:
            candidates = {index for probe in found for index in self._triggers.get(probe, ())} | self._always
        else:
            triggers = self._reader_triggers.get(reader, {})
            candidates = {index for probe in found for index in triggers.get(probe, ())}
            candidates |= self._always & self._by_reader.get(reader, frozenset())
        by_reader: dict[str, list[tuple[str, tuple[_Shown, ...]]]] = {}
        upvotes = paper.upvotes or 0
        for index in sorted(candidates):
            rule = self._rules[index]
            shown = _explained(self._plans[index], found, upvotes)
            if shown is not None:
                by_reader.setdefault(rule.reader, []).append((rule.name, shown))
        return [_explain(reader, rules, paper.id, found, texts) for reader, rules in by_reader.items()]

    def match_all(self, papers: Iterable[Paper]) -> list[Match]:
        """The matches of every paper, in paper order."""
        return [found for paper in papers for found in self.match(paper)]

    def encoded(self, papers: Iterable[Paper], readers: Collection[str] | None = None) -> dict[str, list[str]]:
        """What ``Match.as_json`` and the paper's title give for each match of ``papers`` (of
        ``readers`` only, if given), encoded as JSON, by reader in paper order.

        The same objects ``match`` describes, without a Match or Hit per result: each hit's
        text is encoded once per paper for every reader, each rule's terms once per process."""
        out: dict[str, list[str]] = {}
        if self._json is None:
            self._json = [_rule_json(rule, plan) for rule, plan in zip(self._rules, self._plans, strict=True)]
        if readers is not None and self._by_reader.keys() <= set(readers):
            readers = None  # every reader: nothing to leave out
        for paper in papers:
            self._encode_paper(paper, readers, out)
        return out

    def _encode_paper(self, paper: Paper, readers: Collection[str] | None, out: dict[str, list[str]]) -> None:
        texts, found = self._scanned(paper)
        triggers, candidates = self._triggers, set(self._always)
        for probe in found:
            if (indices := triggers.get(probe)) is not None:
                candidates.update(indices)
        upvotes, encoded = paper.upvotes or 0, self._json or []
        shown_texts: dict[tuple[int, str], str] = {}  # (probe, field) → its text encoded, for every reader
        by_reader: dict[str, tuple[list[str], list[str]]] = {}
        for index in sorted(candidates):
            reader, plan, name, heads = encoded[index]
            if readers is not None and reader not in readers:
                continue
            verdict = _verdict(plan, found, upvotes)
            if verdict is None:
                continue
            entry = by_reader.get(reader)
            if entry is None:
                entry = by_reader[reader] = ([], [])
            entry[0].append(name)
            if why := _why_json(heads[verdict], found, texts, shown_texts):
                entry[1].append(why)
        if by_reader:
            paper_id = ', "paper": ' + _encode_string(paper.id) + ', "rules": ['
            title = '], "title": ' + _encode_string(paper.title) + "}"
            for reader, (names, whys) in by_reader.items():
                out.setdefault(reader, []).append(
                    '{"reader": ' + _encode_string(reader) + paper_id + ", ".join(names) + '], "why": ['
                    + ", ".join(whys) + title)

    def _scanned(self, paper: Paper) -> tuple[dict[str, _Text], Found]:
        """The paper's fields tokenized and what they hold; remembered for the last papers seen."""
        key = (paper.title, paper.summary, paper.authors, paper.ai_keywords, paper.organization)
        known = self._recent.get(key)
        if known is not None:
            self._recent.move_to_end(key)
            return known
        texts = {name: _Text(_field_text(paper, name)) for name in self._fields}
        known = self._recent[key] = (texts, self._found(paper, texts))
        if len(self._recent) > _RECENT_PAPERS:
            self._recent.popitem(last=False)
        return known

    def _found(self, paper: Paper, texts: dict[str, _Text]) -> Found:
        found: Found = {}
        for name, text in texts.items():
            if self._firsts is None:
                continue
            leaves = _leaf_hits(self._firsts, text.folded)
            if leaves is None:
                text.tokenize()
                self._scan(name, text, found)
            elif leaves:
                self._record_leaf_texts(leaves, text, name, found)
        for probe, regex, required, fields in self._regexes:
            for name in fields:
                hit = required in texts[name].folded and _search(regex, texts[name].folded)
                if hit:
                    found.setdefault(probe, {})[name] = texts[name].chars(*hit.span())
        for author in paper.authors if self._authors else ():
            for given, surname in name_forms(author):
                for probe, wanted in self._authors.get(surname, ()):
                    if same_given_names(wanted, given):
                        found.setdefault(probe, {}).setdefault("authors", author)
        if self._organizations and paper.organization:
            org = self._organizations.get(organization_key(paper.organization))
            if org is not None:
                found[org] = {"organization": paper.organization}
        return found

    def _scan(self, name: str, text: _Text, found: Found) -> None:
        """The single pass: every trie path from every token (or hyphen-joined word) that starts one."""
        tokens, memo = text.tokens, self._memo
        distinct = set(tokens)
        new = distinct.difference(memo)  # in C, memo being a dict
        if len(memo) + len(new) > _MEMO_LIMIT:  # forget before this paper, never halfway through it
            memo.clear()
            self._starters.clear()
            self._leaves.clear()
            self._leaf_ends.clear()
            self._pairs.clear()
            self._wild.clear()
            new = distinct
        for token in new:
            self._first(token)
        starters = distinct & self._starters  # in C: most tokens start nothing
        if starters:
            # A token that is a whole term and starts no longer one: only its first occurrence
            # can explain anything, and list.index finds it in C.
            leaves = starters & self._leaves
            if leaves:
                self._record_leaves(leaves, tokens, name, found)
            if len(leaves) < len(starters):
                for index in self._phrase_starts(text, starters - leaves):
                    self._follow(memo[tokens[index]], index, index, text, name, found)
        for index, joined_words in text.joins.items():
            for joined, last in joined_words:
                nodes = memo[joined] if joined in memo else self._first(joined)
                if nodes:
                    self._follow(nodes, index, last, text, name, found)

    def _first(self, token: str) -> list[_Node]:
        """The trie's first step for ``token``, remembered: the vocabulary of papers is small."""
        nodes = self._memo[token] = self._trie.step(token)
        if nodes:
            self._starters.add(token)
            if not any(node.inner for node in nodes):
                self._leaves.add(token)
                self._leaf_ends[token] = tuple(probe for node in nodes for probe in node.ends)
            for node in nodes:
                self._pairs.update((token, second) for second in node.exact)
                if node.prefixes:
                    self._wild.add(token)
        return nodes

    def _record_leaf_texts(self, leaves: dict[str, tuple[int, int]], text: _Text, name: str, found: Found) -> None:
        """What ``_scan`` finds in a field whose only first steps are leaves: each term at its
        leaves' first place, shown as that word of the original text."""
        first: dict[int, tuple[int, int]] = {}
        for key, span in leaves.items():
            for probe in self._trie.exact[key].ends:
                if probe not in first or first[probe][0] > span[0]:
                    first[probe] = span
        for probe, (start, end) in first.items():
            found.setdefault(probe, {})[name] = text.chars(start, end)

    def _record_leaves(self, leaves: set[str], tokens: list[str], name: str, found: Found) -> None:
        """The terms each leaf token is, found where it first occurs (``_follow`` without going on)."""
        ends = self._leaf_ends
        # Each token's first index, in C: zip the tokens from the end, the first occurrence writes last.
        firsts = dict(zip(reversed(tokens), range(len(tokens) - 1, -1, -1), strict=True))
        for token in leaves:
            index = firsts[token]
            span = (index, index)
            for probe in ends[token]:
                where = found.get(probe)
                if where is None:
                    found[probe] = {name: span}
                    continue
                earlier = where.get(name)
                if not isinstance(earlier, tuple) or earlier[0] > index:
                    where[name] = span

    def _phrase_starts(self, text: _Text, inner: set[str]) -> list[int]:
        """The indices of ``inner`` tokens (starters that may go on) worth following, in order:
        each one's first occurrence (for the term it may be itself), then only those followed
        by a token or a hyphen-joined word that can come next. Skipping the others skips
        nothing: a later occurrence's own hit never replaces the first's."""
        tokens, joins, pairs, wild = text.tokens, text.joins, self._pairs, self._wild
        seen: set[str] = set()
        starts = []
        last = len(tokens) - 1
        for index in compress(itertools.count(), map(inner.__contains__, tokens)):
            token = tokens[index]
            if token not in seen:
                seen.add(token)
                starts.append(index)
            elif index < last and ((token, tokens[index + 1]) in pairs or token in wild or index + 1 in joins):
                starts.append(index)
        return starts

    def _follow(self, nodes: list[_Node], first: int, last: int, text: _Text, name: str, found: Found) -> None:
        for node in nodes:
            for probe in node.ends:
                where = found.get(probe)
                if where is None:
                    found[probe] = {name: (first, last)}
                    continue
                earlier = where.get(name)
                if not isinstance(earlier, tuple) or earlier[0] > first:  # the first occurrence explains the match
                    where[name] = (first, last)
            after = last + 1
            if node.inner and after < len(text.tokens):
                if following := node.step(text.tokens[after]):
                    self._follow(following, first, after, text, name, found)
                for joined, end in text.joins.get(after, ()):
                    if following := node.step(joined):
                        self._follow(following, first, end, text, name, found)


def _automaton(trie: _Node) -> ahocorasick.Automaton | None:
    """An Aho-Corasick automaton of the trie's first steps (each with its length and whether it
    must end a word); None if there are none."""
    if not trie.exact and not trie.prefixes:
        return None
    automaton = ahocorasick.Automaton()
    for key in trie.exact:
        node = None if key in trie.prefixes else trie.exact[key]
        automaton.add_word(key, (len(key), node is not None, node))
    for key in trie.prefixes:
        automaton.add_word(key, (len(key), False, None))
    automaton.make_automaton()
    return automaton


def _leaf_hits(automaton: ahocorasick.Automaton, folded: str) -> dict[str, tuple[int, int]] | None:
    """The first (start, end) in ``folded`` of each first step of the trie found as a whole token,
    if none can go on (a leaf, or a phrase's first word whose next word cannot follow it); None
    if a longer term or a hyphen-joined word may start, for ``_scan`` to walk the tokens; {} if
    no term can.

    A token is a maximal run of letters and digits, as the automaton's keys are. The automaton
    runs over the text without its hyphens (where joined words are found): a key with neither
    a letter or digit nor a hyphen's place on either side is a token or a joined word, the
    latter when a hyphen's place is inside it."""
    text, cuts = folded, list[int]()
    if "-" in folded:
        pieces = folded.split("-")
        text, cuts = "".join(pieces), list(accumulate(map(len, pieces[:-1])))
    cut = frozenset(cuts)
    firsts: dict[str, tuple[int, int]] = {}
    for end, (length, whole, node) in automaton.iter(text):
        start = end - length + 1
        if start > 0 and text[start - 1].isalnum() and start not in cut:
            continue
        if whole and end + 1 < len(text) and text[end + 1].isalnum() and end + 1 not in cut:
            continue
        if node is None:  # a wildcard's prefix
            return None
        if cuts:  # back to offsets in the text with its hyphens
            before = bisect.bisect_right(cuts, start)
            if bisect.bisect_right(cuts, end) != before:
                return None
            start, end = start + before, end + before
        if node.inner and _may_go_on(node, folded, end + 1):
            return None
        key = folded[start : end + 1]
        if key not in firsts:
            firsts[key] = (start, end + 1)
    return firsts


_NEXT_WORD = re.compile(r"[^\W_]+(-)?")


def _may_go_on(node: _Node, folded: str, after: int) -> bool:
    """Whether the token after ``after`` (past separators; a break between is passed over too,
    which only errs on the safe side) steps from ``node`` or starts a hyphen-joined word."""
    following = _NEXT_WORD.search(folded, after)
    return following is not None and (following.group(1) is not None or bool(node.step(following.group(0))))


def _search(regex: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The first hit that is not empty: an empty one (``(?=deep)``) would explain nothing."""
    hit = regex.search(text)
    if hit is None or hit.end() > hit.start():
        return hit
    return next((later for later in regex.finditer(text) if later.end() > later.start()), None)


def _field_text(paper: Paper, name: str) -> str:
    # List fields are joined with ", ", a break no phrase spans.
    if name == "title":
        return paper.title
    if name == "abstract":
        return paper.summary or ""
    if name == "ai_keywords":
        return ", ".join(paper.ai_keywords)
    if name == "authors":
        return ", ".join(paper.authors)
    return paper.organization or ""


_Shown = tuple[int, frozenset[str], str]  # a term's probe, its fields, its label
# A rule flattened for the hot loop: min upvotes, all (probe, fields), exclude (probe, fields),
# any (probe, fields), the terms its why shows, those its query adds when it holds, and the
# query compiled into closures (None without one).
_Plan = tuple[int, tuple[tuple[int, frozenset[str]], ...], tuple[tuple[int, frozenset[str]], ...],
              tuple[tuple[int, frozenset[str]], ...], tuple[_Shown, ...], tuple[_Shown, ...],
              Callable[[Found], bool] | None]


def _plan(rule: _Rule) -> _Plan:
    def pairs(terms: Iterable[_Term]) -> tuple[tuple[int, frozenset[str]], ...]:
        return tuple((t.probe, t.fields) for t in terms)

    def shown(terms: Iterable[_Term]) -> tuple[_Shown, ...]:
        return tuple((t.probe, t.fields, t.label) for t in terms)

    positive = () if rule.query is None else shown(rule.query_terms[t] for t in q.positive_terms(rule.query))
    holds = None if rule.query is None else q.compile_query(rule.query, lambda t: _term_test(rule.query_terms[t]))
    return (rule.min_upvotes, pairs(rule.all_of), pairs(rule.none_of), pairs(rule.any_of),
            shown((*rule.any_of, *rule.all_of)), positive, holds)


def _term_test(term: _Term) -> Callable[[Found], bool]:
    """``_holds`` for one term, as a closure over its probe and fields."""
    probe, fields = term.probe, term.fields

    def test(found: Found) -> bool:
        where = found.get(probe)
        return where is not None and not fields.isdisjoint(where)
    return test


def _explained(plan: _Plan, found: Found, upvotes: int) -> tuple[_Shown, ...] | None:
    """What ``rule.explained`` says, on the flattened rule: the terms its why shows, or None."""
    verdict = _verdict(plan, found, upvotes)
    if verdict is None:
        return None
    return plan[4] + plan[5] if verdict else plan[4]


def _verdict(plan: _Plan, found: Found, upvotes: int) -> bool | None:
    """None if the flattened rule does not match; else whether its why shows its query's terms too."""
    least, all_of, none_of, any_of, _shown, _positive, holds = plan
    if upvotes < least:
        return None
    for probe, fields in all_of:
        where = found.get(probe)
        if where is None or fields.isdisjoint(where):
            return None
    for probe, fields in none_of:
        where = found.get(probe)
        if where is not None and not fields.isdisjoint(where):
            return None
    if holds is not None and holds(found):
        return True
    for probe, fields in any_of:
        where = found.get(probe)
        if where is not None and not fields.isdisjoint(where):
            return False
    return None


def _explain(reader: str, rules: list[tuple[str, tuple[_Shown, ...]]], paper_id: str, found: Found,
             texts: dict[str, _Text]) -> Match:
    # An ordered set of (rule, term, field, text): a term two rules share is one hit per rule.
    # Only terms with a hit are looked at, and each text is cut once per paper (``_Text.words``).
    hits: dict[tuple[str, str, str, str], None] = {}
    for rule, terms in rules:
        for probe, fields, label in terms:
            where = found.get(probe)
            if where is None:
                continue
            for name, spot in where.items():
                if name in fields:
                    text = spot if isinstance(spot, str) else texts[name].words(*spot)
                    hits[rule, label, name, text] = None
    return Match(reader, paper_id, tuple(rule for rule, _ in rules), tuple(map(_hit, hits)))


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


# A rule's terms its why shows, each as its probe and, by field, the start of its hit's JSON
# object: without, then with the query's terms.
_Heads = tuple[tuple[int, dict[str, str]], ...]


def _rule_json(rule: _Rule, plan: _Plan) -> tuple[str, _Plan, str, tuple[_Heads, _Heads]]:
    """A rule's reader, plan, name and the start of each hit it can show, the last two encoded as
    ``Match.as_json`` encodes them."""
    name = _encode_string(rule.name)

    def heads(shown: tuple[_Shown, ...]) -> _Heads:
        return tuple((probe, {field_name: '{"rule": ' + name + ', "field": ' + _encode_string(field_name)
                              + ', "term": ' + _encode_string(label) + ', "text": '
                              for field_name in sorted(fields)})
                     for probe, fields, label in shown)
    return rule.reader, plan, name, (heads(plan[4]), heads(plan[4] + plan[5]))


def _why_json(terms: _Heads, found: Found, texts: dict[str, _Text], shown_texts: dict[tuple[int, str], str]) -> str:
    """One rule's hits as ``Match.as_json`` lists them, encoded and joined: what ``_explain`` finds
    for the rule (a rule's own hits are distinct; two rules never share one)."""
    hits: dict[str, None] = {}
    for probe, heads in terms:
        where = found.get(probe)
        if where is None:
            continue
        for name, spot in where.items():
            head = heads.get(name)
            if head is not None:
                text = shown_texts.get((probe, name))
                if text is None:
                    words = spot if isinstance(spot, str) else texts[name].words(*spot)
                    text = shown_texts[probe, name] = _encode_string(words) + "}"
                hits[head + text] = None
    return ", ".join(hits)
