"""A paper's field as the matcher reads it: folded, cut into tokens (the words of a hyphenated
run also joined), and a run of tokens cut back out of the original text to show a hit.

A token is a run of letters and digits; a sentence or clause end (``.``, ``,``, ``;``, ``:``,
``!``, ``?`` before a space or the end) and a bracket are break tokens, which no term's word
ever is, so no phrase spans them. Words joined by single hyphens form a hyphenated run: its
parts are tokens, and its joined words (``pre-training`` → ``pretraining``) are offered too.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable
from itertools import compress, repeat

from paperwatch.folding import fold, fold_char

_MAX_COMPOUND = 8  # a hyphenated run longer than this is noise; only its first parts are joined
_BREAK = "|"  # the break token of the ASCII tokenizer (the general one's is "")

# Folded text → hyphenated runs, and "" for a break a phrase may not span.
_COMPOUND_OR_BREAK = re.compile(r"([^\W_]+(?:-[^\W_]+)*)|[.,;:!?](?=\s|$)|[()\[\]{}]")
_COMPOUND = re.compile(r"[^\W_]+(?:-[^\W_]+)*")


def _ascii_table() -> bytes:
    """ASCII text as the regular expressions above read it, one byte for one: letters, digits
    and hyphens kept, whitespace a space, clause punctuation "." (a break only before a space),
    brackets the break, anything else "#" (a separator that is not whitespace)."""
    table = bytearray(b"#" * 256)
    for code in range(128):
        char = chr(code)
        if char.isalnum() or char == "-":
            table[code] = code
        elif char.isspace():  # str.isspace is re's \s: \x1c-\x1f included
            table[code] = ord(" ")
        elif char in ".,;:!?":
            table[code] = ord(".")
        elif char in "()[]{}":
            table[code] = ord(_BREAK)
    return bytes(table)


_MARK = _ascii_table()
_SPACED = bytes(code if chr(code).isalnum() and code < 128 else ord(" ") for code in range(256))
_SEPARATORS = bytes.maketrans(b".#", b"  ")


def _mark(text: str) -> bytes:
    """ASCII text with letters, digits and hyphens kept, each break a word "|" of its own and
    spaces elsewhere: byte translations and replacements in C, where a regular expression
    costs several times more."""
    marked = text.encode("ascii").translate(_MARK).replace(b". ", b"| ")
    if marked.endswith(b"."):
        marked = marked[:-1] + b"|"
    marked = marked.translate(_SEPARATORS)
    return marked.replace(b"|", b" | ") if b"|" in marked else marked


class Text:
    """One field of one paper, folded and tokenized; its tokens found back in the original on demand."""

    __slots__ = ("_cuts", "_origin", "_spaced", "folded", "joins", "original", "plain", "tokens")

    def __init__(self, original: str) -> None:
        self.original = original
        self.folded = fold(original)
        self.plain = original.isascii()  # then folded only lowered it: offsets are the same
        self.tokens: list[str] = []
        self.joins: dict[int, list[tuple[str, int]]] = {}
        self._cuts: dict[tuple[int, int], str] = {}
        self._origin: list[int] | None = None  # folded offset -> original offset; [] when they agree
        self._spaced: str | None = None  # ASCII text: the folded text, all but letters and digits spaces

    def tokenize(self, joinable: Callable[[str], bool]) -> None:
        """Tokens and joins; ``joinable`` says whether a joined word may be read as part of a
        term: those that cannot are left out, as they change nothing."""
        folded = self.folded
        if not folded.isascii():
            items = _COMPOUND_OR_BREAK.findall(folded)
            self.tokens = " ".join(items).replace("-", " ").split(" ") if items else []
            self.joins = _joins(items, joinable) if "-" in folded else {}
            return
        text = _mark(folded).decode("ascii")
        if "-" not in text:
            self.tokens = text.split()
        else:
            self.tokens, self.joins = _hyphenated(text, joinable)

    def first(self, token: str) -> str:
        """The original text of the first occurrence of ``token``, one of the tokens."""
        start = self._find(token, 0)
        return self.original[start : start + len(token)] if self.plain else self.chars(start, start + len(token))

    def words(self, first: int, last: int) -> str:
        """The original text of tokens ``first`` to ``last`` (inclusive, neither a break); cut
        once per paper, however many readers' matches show it."""
        cut = self._cuts.get((first, last))
        if cut is None:
            tokens, folded = self.tokens, self.folded
            # Token ``first`` is the n-th occurrence of its word; each next token is the next word.
            start = self._find(tokens[first], tokens[:first].count(tokens[first]))
            end = start + len(tokens[first])
            for token in tokens[first + 1 : last + 1]:
                end = folded.find(token, end) + len(token)
            cut = self._cuts[first, last] = self.chars(start, end)
        return cut

    def _find(self, token: str, skip: int) -> int:
        """Where ``token`` is a whole token (not part of a longer one) for the ``skip + 1``-th time."""
        if self.plain:  # a search for the token between spaces, in C
            spaced, start = self._spaced or self._space(), -1
            needle = f" {token} "
            while (start := spaced.find(needle, start + 1)) >= 0 and skip:
                skip -= 1
        else:
            folded, start = self.folded, -1
            while (start := folded.find(token, start + 1)) >= 0:
                if _whole(folded, start, start + len(token)):
                    if not skip:
                        break
                    skip -= 1
        if start < 0:
            raise ValueError(f"{token!r} is not a token of {self.folded!r}")
        return start

    def _space(self) -> str:
        # A space before and after: a token at offset n of the folded text is found between spaces at n.
        spaced = self._spaced = " " + self.folded.encode("ascii").translate(_SPACED).decode("ascii") + " "
        return spaced

    def chars(self, start: int, end: int) -> str:
        """The original text of the folded text's ``[start:end]``."""
        origin = self._origin
        if origin is None:
            origin = self._origin = [] if self.plain else [i for i, char in enumerate(self.original)
                                                            for _ in fold_char(char)]
        if not origin:
            return self.original[start:end]
        return self.original[origin[start] : origin[end - 1] + 1]


def _whole(folded: str, start: int, end: int) -> bool:
    """Whether ``folded[start:end]`` is a whole token: no letter or digit just before or after it."""
    return (start == 0 or not folded[start - 1].isalnum()) and (end == len(folded) or not folded[end].isalnum())


def _hyphenated(marked: str, joinable: Callable[[str], bool]) -> tuple[list[str], dict[int, list[tuple[str, int]]]]:
    """The tokens and joins (as ``_joins`` makes them) of marked text: split once, at its hyphens
    and then at its spaces, which tells after which token each hyphen is."""
    pieces = marked.split("-")
    splits = list(map(str.split, pieces))
    tokens = list(itertools.chain.from_iterable(splits))
    # A hyphen joins the tokens on each side of it if it has a letter or digit on each side (the
    # marked text holds nothing else but spaces and hyphens): the token before it is the last of
    # the pieces before it, and a run of such hyphens, one after each token, a hyphenated run.
    lefts = [end - 1 for end, before, after in zip(itertools.accumulate(map(len, splits)), pieces, pieces[1:])
             if before and after and before[-1] != " " and after[0] != " "]
    joins: dict[int, list[tuple[str, int]]] = {}
    first = previous = -2
    for left in [*lefts, -2]:  # -2: no run goes on to it
        if left != previous + 1:
            if previous == first >= 0:  # most runs: two words, one joined word
                joined = tokens[first] + tokens[first + 1]
                if joinable(joined):
                    joins[first] = [(joined, first + 1)]
            elif previous >= 0:
                _join(tokens[first : previous + 2], first, joins, joinable)
            first = left
        previous = left
    return tokens, joins


def _joins(items: list[str], joinable: Callable[[str], bool]) -> dict[int, list[tuple[str, int]]]:
    """For each token that starts a hyphenated run, the joined words it starts that ``joinable``
    keeps, and their last token."""
    hyphenated = list(compress(itertools.count(), map(operator.contains, items, repeat("-"))))  # in C: few are
    joins: dict[int, list[tuple[str, int]]] = {}
    extra = 0  # tokens the items before this one made beyond one each
    for position in hyphenated:
        run, first = items[position], position + extra
        # A hyphen without a letter or digit on each side joins nothing: "a--b" is two words.
        for piece in _COMPOUND.findall(run) if run[0] == "-" or run[-1] == "-" or "--" in run else (run,):
            parts = piece.split("-")
            _join(parts, first, joins, joinable)
            first += len(parts)
        extra = first - position - 1
    return joins


def _join(parts: list[str], first: int, joins: dict[int, list[tuple[str, int]]],
          joinable: Callable[[str], bool]) -> None:
    """The joined words of a hyphenated run whose first token is ``first`` that ``joinable`` keeps."""
    count = min(len(parts), _MAX_COMPOUND)
    if count == 2:  # most runs: one joined word
        joined = parts[0] + parts[1]
        if joinable(joined):
            joins[first] = [(joined, first + 1)]
        return
    for a in range(count - 1):
        kept = [(joined, first + b) for b in range(a + 1, count) if joinable(joined := "".join(parts[a : b + 1]))]
        if kept:
            joins[first + a] = kept
