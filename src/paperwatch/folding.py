"""Text folding, the one way every paper and every rule term is read: casefolded, accents
removed, ligatures expanded, dashes unified; and the plurals a keyword also matches."""

from __future__ import annotations

import functools
import re
import unicodedata

# Letters NFKD leaves alone, dashes, and invisible characters that split words in copied text.
_FOLD_TABLE = str.maketrans(
    {"ø": "o", "đ": "d", "ð": "d", "ł": "l", "ħ": "h", "ı": "i", "æ": "ae", "œ": "oe", "þ": "th"}
    | dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-")
    | dict.fromkeys("\u00ad\u200b\u200c\u200d\u2060\ufeff", "")
)
WORD = re.compile(r"[^\W_]+")


@functools.lru_cache(maxsize=8192)
def fold_char(char: str) -> str:
    """One character folded (perhaps into several, or none): what ``fold`` does to it."""
    decomposed = unicodedata.normalize("NFKD", char.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_FOLD_TABLE)


def fold(text: str) -> str:
    """``text`` casefolded, without accents, ligatures expanded, dashes as ``-``.

    Folded char by char, so an offset in the result maps back to the original text."""
    return text.lower() if text.isascii() else "".join(map(fold_char, text))


def plural(word: str) -> str:
    """The regular English plural: networks, studies, boxes, losses, keys."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if len(word) > 1 and word[-1] == "y" and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"
