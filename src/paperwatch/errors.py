"""The exceptions users can act on.

    PaperwatchError
     ├── ConfigError      the config file is wrong (exit 78); carries every problem found
     │    └── RuleError   mistakes in readers' rules, each a RuleProblem saying where it is
     ├── FetchError       a URL could not be fetched (after retries), or was refused
     ├── ParseError       a page or API answer did not have the shape we know
     ├── StoreError       the database could not be opened or written
     ├── MailError        a message could not be delivered (``temporary`` says whether to retry)
     └── TemplateError    a digest template is missing or broken (names the template and line)

Every message is written for the person running paperwatch: it names the file, key or URL
and says what happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class PaperwatchError(Exception):
    """Base of every error paperwatch reports to its user."""

    exit_code = 1


class ConfigError(PaperwatchError):
    """The configuration is invalid; ``problems`` holds one line per mistake."""

    exit_code = 78

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One mistake in a reader's rule: whose, which rule, where in it, and what is wrong.

    ``key`` is the path inside the rule (``("keywords", 0)``; ``()`` for the rule as a whole),
    so the config can find the mistake in the file without reading the message."""

    reader: str
    rule: str
    key: tuple[str | int, ...]
    message: str

    def __str__(self) -> str:
        path = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in self.key)
        return f"readers.{self.reader}.rules.{self.rule}{path}: {self.message}"


class RuleError(ConfigError):
    """Mistakes in readers' rules; ``rules`` holds them with where each one is."""

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        self.rules = list(problems)
        super().__init__([str(problem) for problem in self.rules])


class FetchError(PaperwatchError):
    """A URL could not be fetched; the message names the URL and what happened."""

    def __init__(self, url: str, reason: str, *, status: int | None = None) -> None:
        self.url = url
        self.reason = reason
        self.status = status
        super().__init__(f"{url}: {reason}")


class ParseError(PaperwatchError):
    """A page did not have a shape we know how to read (the site may have changed)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class StoreError(PaperwatchError):
    """The database could not be opened, migrated or written."""


class MailError(PaperwatchError):
    """Delivery failed; ``temporary`` failures (4xx, connection, timeout) are retried later,
    permanent ones (5xx) are not. ``reply`` is what the server said, if it said anything."""

    def __init__(self, message: str, *, temporary: bool, reply: str | None = None) -> None:
        self.temporary = temporary
        self.reply = reply
        super().__init__(message)


class TemplateError(PaperwatchError):
    """A digest template could not be loaded or rendered."""
