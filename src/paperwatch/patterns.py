"""``re:`` rules: what makes a regular expression unusable here (invalid, empty hits,
backreferences, lookaround), its compilation by RE2 to run in linear time, and the literal
text every hit of it contains, a cheap prefilter."""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Iterator
from typing import Any, cast

_SPECIAL = frozenset(".^$*+?{}[]\\|()")
_ESCAPE = re.compile(r"\\.", re.DOTALL)
# The whole of an escape (\x41, \u00e9, \N{...}, \12) and of a counted repeat ({2}, {1,3}): their
# digits and letters are not literal text. Reaching too far is safe: it only shortens a run.
_ESCAPE_SPAN = re.compile(r"\\(?:x[0-9a-fA-F]{0,2}|u[0-9a-fA-F]{0,4}|U[0-9a-fA-F]{0,8}|N\{[^}]*\}?|\d{1,3}|.)",
                          re.DOTALL)
_REPEAT = re.compile(r"\{\d*(?:,\d*)?\}")
_EMPTY_PROBES = ("", "a", "a b", "ab-cd. 12")  # a regex that matches empty text in these does so everywhere


def fold_pattern(pattern: str) -> str:
    """The pattern without accents, as the text it searches is folded."""
    return "".join(c for c in unicodedata.normalize("NFKD", pattern) if not unicodedata.combining(c))


def compile_pattern(folded: str, pattern: str) -> re.Pattern[str]:
    """``folded`` (``pattern`` as the rule wrote it, folded) ready to search folded text;
    ValueError saying what is wrong with it."""
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
    return compiled


def first_hit(regex: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The first hit that is not empty: an empty one (``(?=deep)``) would explain nothing."""
    hit = regex.search(text)
    if hit is None or hit.end() > hit.start():
        return hit
    return next((later for later in regex.finditer(text) if later.end() > later.start()), None)


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
