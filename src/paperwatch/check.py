"""``paperwatch check``: every mistake in a config in one pass, and the likely slips as warnings.

The config module reads and validates the file's structure; this one adds what needs the
layers above it (the readers' rules compiled by the matcher, the templates, the SMTP password),
so that the config module depends on none of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paperwatch.config import (
    Config,
    Finding,
    _address_warnings,
    _entries,
    _idle_reader_warnings,
    _read,
    _rendered,
    _resolved,
    _validated,
)
from paperwatch.digest import Templates
from paperwatch.errors import ConfigError, TemplateError
from paperwatch.mail import CREDENTIAL_NAME, read_password, unsafe_config_file
from paperwatch.match import RuleSpec, rule_problems


@dataclass
class Inspection:
    """What ``check`` reports: the config if it loads, every error and every warning, as lines."""

    config: Config | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def inspect_config(path: Path | None, *, credentials: Path | None = None) -> Inspection:
    """Every mistake in one pass: TOML, structure, cross-field rules, the readers' rules, the
    templates and the SMTP password (from ``credentials``, a systemd credentials folder, if
    given); and warnings. Raises ConfigError only when the file cannot be read or parsed."""
    text, data = _read(path)
    config, findings = _validated(path, data, text)
    findings += _rule_findings(data)
    if config is not None:
        config = _resolved(config)
        findings += _mail_findings(config, credentials)
    findings += _address_warnings(data) + _idle_reader_warnings(data)
    errors = [f for f in findings if not f.warning]
    return Inspection(config if not errors else None, _rendered(path, text, data, errors),
                      _rendered(path, text, data, [f for f in findings if f.warning]))


_RULE_LISTS = ("keywords", "all", "exclude", "authors", "organizations", "fields")


def _rule_findings(data: dict[str, Any]) -> list[Finding]:
    """The readers' rules compiled from the file's data, so that a rule's mistakes are found in the
    same pass as a wrong section elsewhere; a key of the wrong type is left to the structural check."""
    specs, where, misspelt = [], {}, set()
    for r, reader in _entries(data, "readers"):
        for n, rule in _entries(reader, "rules"):
            spec = _lenient_spec(r, n, rule)
            if spec is None:
                continue
            where[spec.reader, spec.name] = ("readers", r, "rules", n)
            specs.append(spec)
            if set(rule) - {*_RULE_LISTS, "name", "query", "min_upvotes"}:
                misspelt.add((spec.reader, spec.name))  # "empty" may only mean a misspelt key, reported already
    findings = []
    for problem in rule_problems(specs):
        which = (problem.reader, problem.rule)
        if which not in where or (which in misspelt and not problem.key and problem.message.startswith("empty rule")):
            continue
        findings.append(Finding((*where[which], *problem.key), problem.message, on_value=bool(problem.key)))
    return findings


def _lenient_spec(r: int, n: int, rule: dict[str, Any]) -> Any:
    """A RuleSpec of the rule's data under names that cannot clash, or None if a key has the wrong type."""
    lists = {key: rule.get(key, []) for key in _RULE_LISTS}
    query, upvotes = rule.get("query"), rule.get("min_upvotes", 0)
    if not all(isinstance(v, list) and all(isinstance(t, str) for t in v) for v in lists.values()) \
            or not isinstance(query, (str, type(None))) or type(upvotes) is not int:
        return None
    return RuleSpec(reader=f"\x01{r}", name=f"\x01{n}", query=query, min_upvotes=max(upvotes, 0),
                    **{key: tuple(value) for key, value in lists.items()})


def _mail_findings(config: Config, credentials: Path | None) -> list[Finding]:
    """The templates, the file's safety for an SMTP login, and the password."""
    out = []
    try:
        Templates.load(config.mail.templates)
    except TemplateError as exc:
        out.append(Finding(("mail", "templates"), str(exc)))
    if (unsafe := unsafe_config_file(config.path, config.mail)) is not None:
        out.append(Finding(("mail", "smtp", "username"), unsafe))
    return out + _password_findings(config, credentials)


def _password_findings(config: Config, credentials: Path | None) -> list[Finding]:
    """The SMTP password as the service will read it. Outside the service a systemd credential
    cannot be read: that is a warning, so that ``check && systemctl reload`` works, unless
    ``credentials`` names the folder holding it."""
    smtp = config.mail.smtp
    if smtp is None or smtp.username is None:
        return []
    folder = credentials or (Path(os.environ["CREDENTIALS_DIRECTORY"])
                             if os.environ.get("CREDENTIALS_DIRECTORY") else None)
    uses_credential = smtp.password_file is None and smtp.password_env is None
    if uses_credential and folder is None:
        return [Finding(("mail", "smtp", "username"),
                        f"no password to check here: it comes from the systemd credential {CREDENTIAL_NAME}, "
                        "which only the service can read; `check --credentials DIR` reads it from DIR",
                        warning=True, on_value=False)]
    if uses_credential and folder is not None and not (folder / CREDENTIAL_NAME).is_file():
        return [Finding(("mail", "smtp", "username"), f"a username needs a password: {folder} has no "
                                                      f"credential {CREDENTIAL_NAME}", on_value=False)]
    saved = os.environ.get("CREDENTIALS_DIRECTORY")
    try:
        if folder is not None:
            os.environ["CREDENTIALS_DIRECTORY"] = str(folder)
        read_password(smtp)
    except ConfigError as exc:
        return [Finding(("mail", "smtp", _smtp_key(p)), p.partition(": ")[2] or p, on_value=False)
                for p in exc.problems]
    finally:
        if saved is None:
            os.environ.pop("CREDENTIALS_DIRECTORY", None)
        else:
            os.environ["CREDENTIALS_DIRECTORY"] = saved
    return []


def _smtp_key(problem: str) -> str:
    head = problem.partition(":")[0]
    return head.removeprefix("mail.smtp.") if head.startswith("mail.smtp.") else "username"
