"""The Aho-Corasick pass over a field, cheaper than tokenizing it when it holds few terms: whether
it holds any term's first word at all, and, if its few hits are all words that start no longer
term, where each first occurs."""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate

import ahocorasick

from paperwatch.terms import Node

QUICK_HITS = 10  # hits of a field read in Python before tokenizing it is the cheaper way
_NEXT_WORD = re.compile(r"[^\W_]+(-)?")


def first_steps(trie: Node) -> ahocorasick.Automaton | None:
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


def leaf_hits(automaton: ahocorasick.Automaton, folded: str) -> dict[str, tuple[int, int]] | None:
    """The first (start, end) in ``folded`` of each first step of the trie found as a whole token,
    if none can go on (a leaf, or a phrase's first word whose next word cannot follow it) and
    there are few; None if a longer term or a hyphen-joined word may start, or if reading the
    hits costs more than tokenizing; {} if no term can start.

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
    for count, (end, (length, whole, node)) in enumerate(automaton.iter(text)):
        start = end - length + 1
        if count == QUICK_HITS:
            return None
        if start > 0 and text[start - 1].isalnum() and start not in cut:
            continue
        if whole and end + 1 < len(text) and text[end + 1].isalnum() and end + 1 not in cut:
            continue
        if node is None:  # a wildcard's prefix
            return None
        if cuts:  # back to offsets in the text with its hyphens
            before = bisect_right(cuts, start)
            if bisect_right(cuts, end) != before:
                return None
            start, end = start + before, end + before
        if node.inner and _may_go_on(node, folded, end + 1):
            return None
        key = folded[start : end + 1]
        if key not in firsts:
            firsts[key] = (start, end + 1)
    return firsts


def _may_go_on(node: Node, folded: str, after: int) -> bool:
    """Whether the token after ``after`` (past separators; a break between is passed over too,
    which only errs on the safe side) steps from ``node`` or starts a hyphen-joined word."""
    following = _NEXT_WORD.search(folded, after)
    return following is not None and (following.group(1) is not None or bool(node.step(following.group(0))))
