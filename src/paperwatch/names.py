"""People and organizations as rules name them: every reading of a name (particles belong to
either part), given names that agree (initials count), and an organization's key."""

from __future__ import annotations

import functools

from paperwatch.folding import WORD, fold

_PARTICLES = frozenset("al bin da das de del della der di do dos du el ibn la le st ten ter van von zu".split())

NameForm = tuple[tuple[str, ...], str]  # given names (and particles not in the surname), surname


@functools.lru_cache(maxsize=65536)
def name_forms(name: str, *, pattern: bool = False) -> tuple[NameForm, ...]:
    """Every reading of a name as (given names, surname): particles may belong to either.

    A paper's author always keeps one given name; a pattern may be a bare surname."""
    parts = fold(name).replace("'", "").replace("\u2019", "").replace(".", ". ").split()  # Y.LeCun: two words
    if not parts or not (last := parts[-1] if parts[-1].isalnum() else "".join(WORD.findall(parts[-1]))):
        return ()
    # Most parts are words already: only the others are read for their words.
    given = [word for part in parts[:-1] for word in ((part,) if part.isalnum() else WORD.findall(part))]
    forms = [(tuple(given), last)]
    cut, lowest = len(given), 0 if pattern else 1
    while cut > lowest and given[cut - 1] in _PARTICLES:
        cut -= 1
        forms.append((tuple(given[:cut]), "".join(given[cut:]) + last))
    return tuple(forms)


def _same_name(a: str, b: str) -> bool:
    return a == b or (len(a) == 1 and b.startswith(a)) or (len(b) == 1 and a.startswith(b))


def same_given_names(pattern: tuple[str, ...], author: tuple[str, ...]) -> bool:
    """First names agree (initials count); middle names optional, but in order where both give some."""
    if not pattern:
        return True
    if not author or not _same_name(pattern[0], author[0]):
        return False
    shorter, longer = sorted((pattern[1:], author[1:]), key=len)
    rest = iter(longer)
    return all(any(_same_name(name, other) for other in rest) for name in shorter)


def organization_key(name: str) -> str:
    return "".join(WORD.findall(fold(name)))
