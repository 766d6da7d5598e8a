"""Keywords as the matcher looks for them: their folded words (``*`` ending a word makes it a
prefix), every token sequence they may appear as, and the trie those sequences are walked in."""

from __future__ import annotations

import re
from collections.abc import Iterator

from paperwatch.folding import fold, plural

MAX_PHRASE_WORDS = 8
_KEYWORD_WORD = re.compile(r"([^\W_]+)(\*)?")
_STRAY_STAR = re.compile(r"(?<![^\W_])\*|\*(?=[^\W_*])|\*\*")


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


class Node:
    """A trie node: children by exact token and by prefix, and the probes ending here."""

    __slots__ = ("ends", "exact", "inner", "lengths", "prefixes")

    def __init__(self) -> None:
        self.exact: dict[str, Node] = {}
        self.prefixes: dict[str, Node] = {}
        self.lengths: tuple[int, ...] = ()
        self.ends: list[int] = []
        self.inner = False  # has children: a phrase may go on from here

    def add(self, step: Step) -> Node:
        token, star = step
        self.inner = True
        if not star:
            return self.exact.setdefault(token, Node())
        if len(token) not in self.lengths:
            self.lengths = tuple(sorted({*self.lengths, len(token)}))
        return self.prefixes.setdefault(token, Node())

    def step(self, token: str) -> list[Node]:
        found = [self.exact[token]] if token in self.exact else []
        for length in self.lengths:
            child = self.prefixes.get(token[:length]) if len(token) >= length else None
            if child is not None:
                found.append(child)
        return found
