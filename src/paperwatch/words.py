"""How counts read in what paperwatch prints and logs."""

from __future__ import annotations


def plural(number: int, word: str, many: str | None = None) -> str:
    """``1 rule``, ``2 rules``, ``1 saved search``, ``2 saved searches``."""
    return f"{number} {word if number == 1 else many or word + 's'}"
