"""What a paper holds: every probe of the compiled rules found in it, by field, each with its
first place, in a single pass over each field whatever the number of rules.

A field holding few terms is read from an Aho-Corasick pass over its text (``prefilter``).
Others are folded and tokenized once (``tokens``); their distinct tokens are looked up among
those that start a path in the trie of every term's spellings (in C: most tokens start
nothing); a term of one token is found at that token's first occurrence; a phrase's first
word is followed only where a next word or joined word can go on from it; each hyphen-joined
word that may be part of a term is walked too. Regexes search the folded text, authors are
looked up by surname (those whose last word ends none are passed over), an organization by
its key.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from itertools import compress, islice, repeat
from typing import Any, cast

from paperwatch.models import Paper
from paperwatch.names import name_forms, organization_key, same_given_names
from paperwatch.patterns import first_hit, required_text
from paperwatch.prefilter import first_steps, leaf_hits
from paperwatch.rules import FIELD_NUMBER, FIELDS, Builder
from paperwatch.terms import Node
from paperwatch.tokens import Text

MEMO_LIMIT = 200_000  # distinct tokens remembered (their first trie step) before starting afresh
_AUTHORS, _ORGANIZATION = FIELD_NUMBER["authors"], FIELD_NUMBER["organization"]
# Where the Aho-Corasick pass was in vain (too many hits) for this many fields in a row (many
# rules: most fields hold many terms), it is tried again only once in so many fields.
_IN_VAIN, _RETRY = 4, 32
# What ``Scanner._words`` finds of a token never seen: a key no probe has, telling it to learn.
_UNSEEN: tuple[tuple[int, str], ...] = ((-1, ""),)

# Probe + field number → where the probe first occurs in that field: a term of one word as
# that word (it is there at the word's first occurrence), a longer one as its (first, last)
# token, or (regexes, authors, organizations, words read from the Aho-Corasick pass) as
# (the text shown,).
Spot = str | tuple[int, int] | tuple[str]
Hits = dict[int, Spot]
Spans = dict[int, str | tuple[int, int]]  # the trie walk's hits in one field


def field_text(paper: Paper, name: str) -> str:
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


class Scanner:
    """The probes of compiled rules, and what it has learnt of the papers' vocabulary."""

    def __init__(self, builder: Builder, fields: Iterable[str], regex_fields: dict[int, set[str]]) -> None:
        self._trie = builder.trie
        self._authors = builder.authors
        self._organizations = builder.organizations
        self._surname_ends = frozenset(surname[start:] for surname in self._authors for start in range(len(surname)))
        self.fields = tuple((FIELD_NUMBER[name], name) for name in FIELDS if name in set(fields))
        required = {probe: (rx, required_text(rx)) for probe, rx in builder.regexes.values()}
        # By field: each regex's hit key in it, the regex, and a text every hit of it contains.
        by_field = [(name, tuple((probe + number, rx, text) for probe, (rx, text) in required.items()
                                 if name in regex_fields[probe])) for name, number in FIELD_NUMBER.items()]
        self._regexes = tuple((name, regexes) for name, regexes in by_field if regexes)
        self._starts = first_steps(builder.trie)
        exact, prefixes = _keys(builder.trie)
        self._exact = frozenset(exact)  # every word of every term's spellings, and every prefix
        self._prefixes = frozenset(prefixes)
        self._prefix_ends = tuple(slice(length) for length in sorted({len(prefix) for prefix in prefixes}))
        # Every prefix cut to the shortest one's length: a word starting with none starts with no prefix.
        self._shortest = min(map(len, prefixes), default=0)
        self._stems = frozenset(prefix[: self._shortest] for prefix in prefixes)
        self._fields_seen = dict.fromkeys(FIELD_NUMBER.values(), 0)
        self._in_vain = dict.fromkeys(FIELD_NUMBER.values(), 0)
        self._memo: dict[str, list[Node]] = {}  # first trie step per token: most tokens repeat
        # A token's hits by itself (the terms it is), by field number: (its probe + that number,
        # the token) for each, () for most tokens.
        self._found: dict[int, dict[str, tuple[tuple[int, str], ...]]] = {number: {} for number, _ in self.fields}
        self._inner: set[str] = set()  # the tokens a longer term may go on from
        # Of those, each with a token that can come next (as a pair), and those a wildcard may
        # continue: an occurrence followed by none of these (nor a hyphen-joined word) goes nowhere.
        self._pairs: set[tuple[str, str]] = set()
        self._wild: set[str] = set()

    def scan(self, paper: Paper) -> tuple[dict[str, Text], Hits]:
        """The paper's fields as read, and every probe found in them."""
        texts = {name: Text(field_text(paper, name)) for _, name in self.fields}
        hits: Hits = {}
        if self._starts is not None:
            for number, name in self.fields:
                hits.update(self._scan(number, texts[name]))
        for name, regexes in self._regexes:
            text = texts[name]
            folded = text.folded
            for key, regex, required in regexes:
                if required in folded and (hit := first_hit(regex, folded)):
                    hits[key] = (text.chars(*hit.span()),)
        if self._authors:
            self._scan_authors(paper.authors, hits)
        if self._organizations and paper.organization:
            org = self._organizations.get(organization_key(paper.organization))
            if org is not None:
                hits[org + _ORGANIZATION] = (paper.organization,)
        return texts, hits

    def _scan_authors(self, authors: Iterable[str], hits: Hits) -> None:
        ends = self._surname_ends
        for author in authors:
            # Each reading's surname ends with the name's last word (folded, an ASCII name is
            # lowered): most names are read only if that word ends a surname looked for.
            if author.isascii():
                words = author.lower().rsplit(None, 1)
                if words and words[-1].isalnum() and words[-1] not in ends:
                    continue
            for given, surname in name_forms(author):
                for probe, wanted in self._authors.get(surname, ()):
                    if same_given_names(wanted, given):
                        hits.setdefault(probe + _AUTHORS, (author,))

    def _scan(self, number: int, text: Text) -> dict[int, tuple[str]] | Spans:
        """Every trie path from every token (or hyphen-joined word) that starts one."""
        # Tokenizing costs more than reading a few Aho-Corasick hits: a field with none needs no
        # more, nor one whose few hits are all words that start no longer term.
        self._fields_seen[number] += 1
        if self._in_vain[number] < _IN_VAIN or self._fields_seen[number] % _RETRY == 0:
            assert self._starts is not None
            leaves = leaf_hits(self._starts, text.folded)
            if leaves is not None:
                self._in_vain[number] = 0
                return self._leaf_texts(leaves, text, number)
            self._in_vain[number] += 1
        text.tokenize(self._joinable)
        tokens, memo = text.tokens, self._memo
        hits = self._words(number, tokens)
        joins = text.joins
        for index in self._going_on(tokens, joins):
            for node in memo[tokens[index]]:
                if node.inner:
                    self._deeper(node, index, index, text, number, hits)
        for index, joined_words in joins.items():
            for joined, end in joined_words:
                nodes = memo[joined] if joined in memo else self._first(joined)
                if nodes:
                    self._follow(nodes, index, end, text, number, hits)
        return hits

    def _leaf_texts(self, leaves: dict[str, tuple[int, int]], text: Text, number: int) -> dict[int, tuple[str]]:
        """What the walk finds in a field whose only first steps are ``leaves``: each term at its
        leaves' first place, shown as that word of the original text."""
        first: dict[int, tuple[int, int]] = {}
        for key, span in leaves.items():
            for probe in self._trie.exact[key].ends:
                if probe not in first or first[probe][0] > span[0]:
                    first[probe] = span
        return {probe + number: (text.chars(start, end),) for probe, (start, end) in first.items()}

    def _joinable(self, word: str) -> bool:
        """Whether ``word`` (a hyphen-joined word) is a word of a term or starts with a prefix of one."""
        if word in self._exact:
            return True
        if word[: self._shortest] not in self._stems:  # most words: in C, whatever the prefixes' lengths
            return False
        return not self._prefixes.isdisjoint(map(word.__getitem__, self._prefix_ends))

    def _learn(self, tokens: Iterable[str]) -> None:
        """The first trie step of the tokens never seen, remembered."""
        distinct = set(tokens)
        new = distinct.difference(self._memo)  # in C, the memo being a dict
        if len(self._memo) + len(new) > MEMO_LIMIT:  # forget before this field, never halfway through it
            learnt: list[dict[str, Any] | set[Any]] = [self._memo, *self._found.values(), self._inner, self._pairs,
                                                        self._wild]
            for remembered in learnt:
                remembered.clear()
            new = distinct
        for token in new:
            self._first(token)

    def _first(self, token: str) -> list[Node]:
        """The trie's first step for ``token``, remembered: the vocabulary of papers is small."""
        nodes = self._memo[token] = self._trie.step(token)
        ends = [probe for node in nodes for probe in node.ends]
        for number, found in self._found.items():
            found[token] = tuple((probe + number, token) for probe in ends)
        for node in nodes:
            if node.inner:
                self._inner.add(token)
                self._pairs.update((token, second) for second in node.exact)
            if node.prefixes:
                self._wild.add(token)
        return nodes

    def _words(self, number: int, tokens: list[str]) -> Spans:
        """The terms each token is by itself, found where it first occurs, as that token: where
        that is, is looked up only if the hit is shown (``Text.first``). Two tokens may be one
        term (``network``, ``networks``): the earlier explains it. Each token's hits are looked
        up in C (most have none), from the last token to the first, so that the earliest writes last."""
        found = self._found[number]
        hits = _looked_up(found, tokens)
        if _UNSEEN[0][0] in hits:  # words never seen before
            self._learn(tokens)
            hits = _looked_up(found, tokens)
        return cast(Spans, hits)

    def _going_on(self, tokens: list[str], joins: dict[int, list[tuple[str, int]]]) -> list[int]:
        """The occurrences of tokens a longer term may start from that a token or a hyphen-joined
        word can follow, in order: following the others finds nothing. Each pair of neighbours is
        looked up in C (a pair's first token always starts a longer term, as does a wildcard's)."""
        going = list(compress(itertools.count(), map(self._pairs.__contains__, zip(tokens, islice(tokens, 1, None)))))
        if not self._wild and not joins:  # in order already
            return going
        more = set(going)
        if self._wild:
            more.update(compress(itertools.count(), map(self._wild.__contains__, tokens[:-1])))
        if joins:
            inner = self._inner
            more.update(index - 1 for index in joins if index and tokens[index - 1] in inner)
        return sorted(more)

    def _follow(self, nodes: list[Node], first: int, last: int, text: Text, number: int, hits: Spans) -> None:
        """The terms ending at ``nodes`` (reached from token ``first`` to ``last``), and those beyond."""
        for node in nodes:
            for probe in node.ends:
                key = probe + number
                earlier = hits.get(key)
                if earlier is None or _start(earlier, text.tokens) > first:  # the first occurrence explains it
                    hits[key] = (first, last)
            if node.inner:
                self._deeper(node, first, last, text, number, hits)

    def _deeper(self, node: Node, first: int, last: int, text: Text, number: int, hits: Spans) -> None:
        after = last + 1
        if after < len(text.tokens):
            if following := node.step(text.tokens[after]):
                self._follow(following, first, after, text, number, hits)
            for joined, end in text.joins.get(after, ()):
                if following := node.step(joined):
                    self._follow(following, first, end, text, number, hits)


def _looked_up(found: dict[str, tuple[tuple[int, str], ...]], tokens: list[str]) -> dict[int, str]:
    """Each key the tokens hit, with the earliest token hitting it (``_UNSEEN``'s key if one is new)."""
    return dict(itertools.chain.from_iterable(filter(None, map(found.get, reversed(tokens), repeat(_UNSEEN)))))


def _keys(trie: Node) -> tuple[set[str], set[str]]:
    """The exact words and the prefixes of every step of the trie."""
    exact, prefixes, nodes = set[str](), set[str](), [trie]
    while nodes:
        node = nodes.pop()
        exact.update(node.exact)
        prefixes.update(node.prefixes)
        nodes += [*node.exact.values(), *node.prefixes.values()]
    return exact, prefixes


def _start(spot: str | tuple[int, int], tokens: list[str]) -> int:
    """Where a hit in ``tokens`` starts: a word's first occurrence, or a span's first token."""
    return tokens.index(spot) if isinstance(spot, str) else spot[0]
