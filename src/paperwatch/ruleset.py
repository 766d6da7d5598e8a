"""The config's rules as the matcher takes them, compiled; each mistake named with its line in
the config file. Apart from delivery: ``match`` compiles rules without loading the digest's
templates or the mail modules."""

from __future__ import annotations

from collections.abc import Iterable

from paperwatch.config import Config, Reader, located
from paperwatch.errors import ConfigError, RuleError, RuleProblem
from paperwatch.match import Matcher, RuleSpec


def rule_specs(readers: Iterable[Reader]) -> list[RuleSpec]:
    """The config's rules as the matcher takes them."""
    return [
        RuleSpec(reader=reader.name, name=rule.name, keywords=rule.keywords, all=rule.all, exclude=rule.exclude,
                 authors=rule.authors, organizations=rule.organizations, fields=rule.fields, query=rule.query,
                 min_upvotes=rule.min_upvotes)
        for reader in readers for rule in reader.rules
    ]


def compile_rules(config: Config) -> Matcher:
    """Every reader's rules compiled; a ConfigError names each mistake with its file line."""
    try:
        return Matcher.compile(rule_specs(config.readers))
    except RuleError as exc:
        raise ConfigError([_locate(config, problem) for problem in exc.rules]) from None


def _locate(config: Config, problem: RuleProblem) -> str:
    """The problem's line, prefixed with where its rule is in the config file."""
    for r, reader in enumerate(config.readers):
        for n, rule in enumerate(reader.rules):
            if (reader.name, rule.name) == (problem.reader, problem.rule):
                return located(config, ("readers", r, "rules", n, *problem.key[:1]), str(problem))
    return located(config, (), str(problem))
