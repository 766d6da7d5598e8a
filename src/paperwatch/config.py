"""The TOML config file → a frozen, validated ``Config``.

Validation is pydantic's (typed models with ``extra="forbid"``): every problem in the file
is reported at once, one line each, as ``FILE:LINE:COL: key.path: message``, unknown keys,
time zones and choices with a suggestion. Key paths name readers, rules and searches as users
write them (``readers.alice.rules.regex.keywords[0]``). ``inspect_config`` adds what ``check``
reports beyond the structure: the rules, the templates, the password, and warnings. Paths are
resolved here, so the rest of the program never sees a relative one.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)

from paperwatch import collector
from paperwatch.address import parse_mailbox
from paperwatch.errors import ConfigError
from paperwatch.timespec import check, is_duration, parse_duration


def _schedule(text: str) -> str:
    """An interval (``"30m"``) or a 5-field cron expression, read as crontab(5) reads it."""
    if not is_duration(text) and len(text.split()) != 5:
        raise ValueError(f"{text!r} is neither an interval like 30m nor a 5-field cron expression")
    check(text)
    return text


def _timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        close = _close_time_zone(name)
        hint = f", did you mean {close}?" if close else " (use a name like Europe/Berlin or UTC)"
        raise ValueError(f"unknown time zone {name!r}{hint}") from None
    return name


def _close_time_zone(name: str) -> str | None:
    """The zone a misspelt ``name`` most likely means: ``America/New York`` is America/New_York."""
    known = zoneinfo.available_timezones()
    by_key = {zone.lower(): zone for zone in known}
    key = "_".join(name.strip().split()).lower()
    if key in by_key:
        return by_key[key]
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.75)
    return by_key[close[0]] if close else None


def _email(text: str) -> str:
    parse_mailbox(text)  # exactly one mailbox, by the rule the headers and the envelope use
    return text


def _base_url(text: str) -> str:
    from yarl import URL

    url = URL(text)
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise ValueError(f"{text!r} is not an http(s) URL with a host and no query")
    return text.rstrip("/")


Duration = Annotated[float, BeforeValidator(parse_duration)]
Schedule = Annotated[str, AfterValidator(_schedule)]
TimeZone = Annotated[str, AfterValidator(_timezone)]
Email = Annotated[str, AfterValidator(_email)]
Words = tuple[str, ...]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PaperwatchSection(_Section):
    database: Path | None = None
    timezone: TimeZone = "UTC"
    admin: Email | None = None


def _poll(text: str) -> str:
    """A poll schedule no more often than the floor: every poll costs the site requests and the log lines."""
    if is_duration(text) and parse_duration(text) < poll_floor():
        raise ValueError(f"polling every {text} is too often: at least {poll_floor():g} s apart (say 1m)")
    return text


def poll_floor() -> float:
    """The shortest poll interval: one minute; ``$PAPERWATCH_POLL_FLOOR`` (seconds) lowers it for a local test site."""
    try:
        return max(0.0, float(os.environ.get("PAPERWATCH_POLL_FLOOR", MIN_POLL)))
    except ValueError:
        return MIN_POLL


MIN_POLL = 60.0


class SourceConfig(_Section):
    base_url: Annotated[str, AfterValidator(_base_url)] = "https://huggingface.co"
    poll: Annotated[str, AfterValidator(_schedule), AfterValidator(_poll)] = "30m"
    lookback_days: int = Field(3, ge=1, le=60)
    max_concurrency: int = Field(2, ge=1, le=16)
    requests_per_minute: float = Field(30, gt=0, le=6000)
    timeout: Duration = 30.0
    connect_timeout: Duration = 10.0
    retries: int = Field(4, ge=0, le=10)
    backoff: Duration = 1.0
    max_wait: Duration = 300.0
    max_page_bytes: int = Field(20_000_000, ge=1024)


class SmtpConfig(_Section):
    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    ca_file: Path | None = None
    timeout: Duration = 30.0

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError("password: passwords do not belong in the config file; "
                             "use password_file, password_env or a systemd credential")
        return data

    @model_validator(mode="after")
    def _plaintext_only_to_loopback(self) -> SmtpConfig:
        if self.security == "none" and not _is_loopback(self.host):
            raise ValueError(f'security = "none" sends mail unencrypted: allowed only to a loopback host, '
                             f"not {self.host}")
        return self

    @model_validator(mode="after")
    def _no_login_in_plaintext(self) -> SmtpConfig:
        if self.security == "none" and self.username is not None:
            raise ValueError('username: security = "none" would send the password unencrypted; '
                             'use "starttls" or "tls", or drop the username')
        return self


class MailConfig(_Section):
    from_: Email = Field("paperwatch <paperwatch@localhost>", alias="from")
    maildir: Path | None = None
    templates: Path | None = None
    give_up: Duration = 3 * 86400.0
    smtp: SmtpConfig | None = None


class Rule(_Section):
    name: str = Field(min_length=1)
    keywords: Words = ()
    all: Words = ()
    exclude: Words = ()
    authors: Words = ()
    organizations: Words = ()
    fields: Words = ()
    query: str | None = None
    min_upvotes: int = Field(0, ge=0)


def _search_query(text: str) -> str:
    query = " ".join(text.split())
    if not query:
        raise ValueError("must not be empty")
    if len(query) > MAX_SEARCH_QUERY:
        raise ValueError(f"at most {MAX_SEARCH_QUERY} characters, got {len(query)}")
    return query


MAX_SEARCH_QUERY = 200


class SavedSearch(_Section):
    """A query on the site's own search, watched like a Scholar alert: new results are mailed."""

    name: str = Field(min_length=1)
    query: Annotated[str, AfterValidator(_search_query)]
    min_upvotes: int = Field(0, ge=0)


class Reader(_Section):
    name: str = Field(min_length=1)
    email: Email
    schedule: Schedule = "0 8 * * *"
    timezone: TimeZone | None = None
    # Strict: TOML has true and false, and "yes" or "no" in quotes is a slip, not a choice.
    send_empty: Annotated[bool, Strict()] = False
    rules: tuple[Rule, ...] = ()
    searches: tuple[SavedSearch, ...] = ()


class Config(_Section):
    path: Path | None = None
    paperwatch: PaperwatchSection = PaperwatchSection()
    source: SourceConfig = SourceConfig()
    mail: MailConfig = MailConfig()
    readers: tuple[Reader, ...] = ()

    @property
    def database(self) -> Path:
        """The database file, always absolute once loaded."""
        if self.paperwatch.database is None:
            raise RuntimeError("Config.database used before load_config resolved it")
        return self.paperwatch.database


def find_config_file(explicit: Path | None) -> Path | None:
    """The file to load: ``-c``, ``$PAPERWATCH_CONFIG``, then the usual places; None if none."""
    named = explicit or (Path(os.environ["PAPERWATCH_CONFIG"]) if os.environ.get("PAPERWATCH_CONFIG") else None)
    if named is not None:
        if not named.is_file():
            raise ConfigError([f"{named}: no such config file"])
        return named
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    for candidate in (Path("paperwatch.toml"), xdg / "paperwatch" / "paperwatch.toml",
                      Path("/etc/paperwatch/paperwatch.toml")):
        if candidate.is_file():
            return candidate
    return None


def default_config() -> Config:
    return load_config(None)


def load_config(path: Path | None) -> Config:
    """Read and validate ``path`` (None: the embedded defaults); raise ConfigError listing every problem."""
    with collector.paused():
        text, data = _read(path)
        config, findings = _validated(path, data, text)
    if config is None or findings:
        raise ConfigError(_rendered(path, text, data, findings))
    return _resolved(config)


@dataclass(frozen=True, slots=True)
class Finding:
    """One mistake (or, with ``warning``, one likely slip that is legal) at the key ``loc``."""

    loc: tuple[str | int, ...]
    message: str
    warning: bool = False
    on_value: bool = True  # the column is the value's, not the key's


def _read(path: Path | None) -> tuple[str, dict[str, Any]]:
    if path is None:
        return "", {}
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomli.loads(text)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text ({exc.reason})"]) from exc
    except tomli.TOMLDecodeError as exc:
        raise ConfigError([_toml_error(path, exc, text)]) from exc
    except RecursionError:  # the parser recurses per level: a file nested thousands deep
        raise ConfigError([f"{path}: arrays or tables nested too deeply to read"]) from None


def _validated(path: Path | None, data: dict[str, Any], text: str) -> tuple[Config | None, list[Finding]]:
    """The config (None if its structure is wrong) and every structural and cross-field mistake."""
    findings = _duplicate_reader_names(data) + _duplicate_rule_names(data)
    try:
        config: Config | None = Config.model_validate({**data, "path": path})
    except ValidationError as exc:
        config = None
        headers = _KeyLines(text).headers
        findings += [_finding(error, headers) for error in exc.errors()]
    return config, findings


def _resolved(config: Config) -> Config:
    folder = config.path.parent.resolve() if config.path else _data_home()
    database = config.paperwatch.database
    database = folder / database if database is not None else _data_home() / "paperwatch.db"
    database = database.resolve()
    # An unset Maildir lives with the state, not beside a config file that may be read-only.
    maildir = folder / config.mail.maildir if config.mail.maildir is not None else database.parent / "mail"
    templates = folder / config.mail.templates if config.mail.templates is not None else None
    return config.model_copy(update={
        "paperwatch": config.paperwatch.model_copy(update={"database": database}),
        "mail": config.mail.model_copy(update={"maildir": maildir.resolve(), "templates": templates}),
    })


def unsafe_location(path: Path) -> str | None:
    """Why others could rewrite ``path`` through its owner or its folder, or None.

    The mode alone is not enough: a file owned by another user can be chmod-ed by them, and
    whoever can write the folder can replace the file with one of their own."""
    trusted = {0, os.getuid()}
    try:
        owner = path.stat().st_uid
        folder = path.resolve().parent
        status = folder.stat()
    except OSError:
        return None
    if owner not in trusted:
        return f"{path} belongs to another user (uid {owner}); chown it to the user paperwatch runs as or root"
    sticky = status.st_mode & stat.S_ISVTX and status.st_uid in trusted
    if status.st_uid not in trusted:
        return f"{path} is in {folder}, which belongs to another user (uid {status.st_uid}): they could replace it"
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
        return (f"{path} is in {folder}, which others can write (mode {stat.filemode(status.st_mode)}): they could "
                f"replace the file; chmod go-w {folder}")
    return None


def _data_home() -> Path:
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state)
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "paperwatch"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def located(config: Config, loc: tuple[str | int, ...], problem: str) -> str:
    """``problem`` prefixed with ``FILE:LINE:COL`` of the key at ``loc`` (or just ``FILE``), as load_config does."""
    if config.path is None:
        return problem
    try:
        line, column = _KeyLines(config.path.read_text(encoding="utf-8")).position(loc, on_value=False)
    except OSError:
        line = column = None
    return f"{config.path}:{line}:{column}: {problem}" if line else f"{config.path}: {problem}"


def _rendered(path: Path | None, text: str, data: dict[str, Any], findings: list[Finding]) -> list[str]:
    """One line per finding, ``FILE:LINE:COL: key.path: message``, in file order."""
    lines = _KeyLines(text)
    out = []
    for found in findings:
        line, column = lines.position(found.loc, on_value=found.on_value)
        where = f"{path}:{line}:{column}" if path and line else str(path or "defaults")
        kind = "warning: " if found.warning else ""
        out.append(((line or 1 << 30, column or 0), f"{where}: {key_path(found.loc, data)}: {kind}{found.message}"))
    return [text for _at, text in sorted(out, key=lambda p: p[0])]


def _finding(error: Any, headers: set[tuple[Any, ...]]) -> Finding:
    loc = tuple("from" if p == "from_" else p for p in error["loc"])
    if error["type"] == "extra_forbidden" and loc in headers:
        return Finding(loc, _unknown_table(loc, error.get("input")), on_value=False)
    return Finding(loc, _message(error, loc), on_value=error["type"] not in ("extra_forbidden", "missing"))


def _unknown_table(loc: tuple[Any, ...], given: Any) -> str:
    """An unknown key set by a table header: suggest the header to write, as ``[[readers.rules]]``."""
    allowed = _allowed_keys(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    parent = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
    brackets = ("[[", "]]") if isinstance(given, list) else ("[", "]")
    if not close:
        return f"unknown table (known: {', '.join(allowed)})"
    name = f"{parent}.{close[0]}" if parent else close[0]
    return f"unknown table, did you mean {brackets[0]}{name}{brackets[1]}?"


_TOML_HINTS = {
    "Invalid value": "text needs quotes, as in {key} = \"{value}\"",
    "Cannot overwrite a value": "the first is on line {earlier}: keep one of them",
    "Expected '=' after a key": "a key is a single word (quote one with spaces), followed by = and a value",
}


def _toml_error(path: Path, exc: tomli.TOMLDecodeError, text: str = "") -> str:
    """The parser's complaint with the key, the column and a hint for the usual slips."""
    message = str(exc)
    found = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if not found:
        return f"{path}: {message}"
    number, column = int(found.group(1)), int(found.group(2))
    what = message[:found.start()].strip()
    source = text.splitlines()
    table, key, value = _toml_context(source, number)
    where = f"{path}:{number}:{column}"
    twice = re.match(r"Cannot declare \((.*)\) twice", what)
    if twice:
        name = ".".join(part.strip(" '\"") for part in twice.group(1).split(",") if part.strip())
        earlier = _first_header(source, name, number)
        return f"{where}: {name}: [{name}] is declared twice" + (f" (first on line {earlier}): merge them"
                                                                 if earlier else "")
    full = ".".join([*table, key]) if key else ".".join(table) or "(file)"
    hint = next((h for start, h in _TOML_HINTS.items() if what.startswith(start)), None)
    if hint and what.startswith("Invalid value") and not _bare_word(value):
        hint = None
    if hint:
        earlier = _first_key(source, table, key, number)
        hint = hint.format(key=key, value=value.strip(), earlier=earlier)
    what = "set twice" if what.startswith("Cannot overwrite") else what[:1].lower() + what[1:]
    return f"{where}: {full}: {what}" + (f"; {hint}" if hint else "")


def _bare_word(value: str) -> bool:
    """Text written without quotes, as in ``timezone = Europe/Berlin``."""
    value = value.split("#", 1)[0].strip()
    return bool(value) and value[0] not in "\"'[{+-0123456789" and value not in ("true", "false", "inf", "nan")


def _toml_context(source: list[str], number: int) -> tuple[list[str], str, str]:
    """The table, the key and the value text at line ``number`` (1-based)."""
    table: list[str] = []
    for text in source[: number - 1]:
        header = _KeyLines._HEADER.match(text)
        if header:
            table = [p.strip().strip("\"'") for p in header.group(2).split(".")]
    line = source[number - 1] if 0 < number <= len(source) else ""
    key, eq, value = line.partition("=")
    if not eq:
        return table, "", ""
    return table, ".".join(p.strip().strip("\"'") for p in key.split(".")), value


def _first_key(source: list[str], table: list[str], key: str, before: int) -> int | None:
    for number in range(1, before):
        context = _toml_context(source, number)
        if context[0] == table and context[1] == key:
            return number
    return None


def _first_header(source: list[str], name: str, before: int) -> int | None:
    for number, text in enumerate(source[: before - 1], start=1):
        header = _KeyLines._HEADER.match(text)
        if header and header.group(2).replace(" ", "") == name:
            return number
    return None


def _message(error: Any, loc: tuple[Any, ...]) -> str:
    kind, given = error["type"], error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        return "unknown key" + (f", did you mean {close[0]}?" if close else f" (known: {', '.join(allowed)})")
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {given!r}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {given!r}"
    if kind in ("string_type",):
        return f"expected text, got {given!r}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {given!r}"
    bound = _BOUNDS.get(kind)
    if bound is not None:
        word, key = bound
        limit = error["ctx"][key]
        return f"must be {word} {limit:g}, got {given!r}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "missing":
        return "required key is missing"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, got {given!r}"
    if kind == "literal_error":
        return _not_a_choice(given, str(error["ctx"]["expected"]))
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _not_a_choice(given: Any, expected: str) -> str:
    choices = re.findall(r"'([^']*)'", expected)
    close = difflib.get_close_matches(str(given).lower(), choices, n=1, cutoff=0.6)
    hint = f", did you mean {close[0]}?" if close else ""
    return f"{given!r} is not one of {', '.join(choices)}{hint}"


_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}


def key_path(loc: tuple[Any, ...], data: Any = None) -> str:
    """``loc`` as users write it: an array entry with a name by its name
    (``readers.alice.rules.regex.keywords[0]``), any other by its index."""
    out, node = "", data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            out += f".{name}" if isinstance(name, str) and name and out else f"[{part}]"
            node = item
        else:
            part = "from" if part == "from_" else part
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(file)"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        model = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return [f.alias or name for name, f in model.model_fields.items() if name != "path"]


class _KeyLines:
    """Maps a key path to the line and column that set it; the parser keeps no positions."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(?:#.*)?$")
    _KEY = re.compile(r"^(\s*)([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=\s*")

    def __init__(self, text: str) -> None:
        self._at: dict[tuple[Any, ...], tuple[int, int, int]] = {}  # loc: line, key column, value column
        self.headers: set[tuple[Any, ...]] = set()
        table: tuple[Any, ...] = ()
        counts: dict[str, int] = {}
        source = text.splitlines()
        for number, line in enumerate(source, start=1):
            header = self._HEADER.match(line)
            if header:
                name = header.group(2).replace(" ", "").replace('"', "").replace("'", "")
                table = self._table(header.group(1), name, counts)
                column = line.index(header.group(1)) + 1
                # [[readers.rule]] is reported at readers[0].rule: the header's own line, not its parent's
                bare = table[:-1] if header.group(1) == "[[" else table
                self.headers.add(bare)
                for loc in (table, bare):
                    self._at.setdefault(loc, (number, column, column))
                continue
            key = self._KEY.match(line)
            if key:
                loc = (*table, *(p.strip() for p in key.group(2).split(".")))
                self._at.setdefault(loc, (number, len(key.group(1)) + 1, key.end() + 1))
                for index, (row, column) in enumerate(_elements(source, number - 1, key.end())):
                    self._at.setdefault((*loc, index), (row, column, column))

    @staticmethod
    def _table(bracket: str, name: str, counts: dict[str, int]) -> tuple[Any, ...]:
        parts = name.split(".")
        if bracket == "[[":
            counts[name] = counts.get(name, 0) + 1
            # a nested array ([[readers.rules]]) restarts under each new parent
            for other in [k for k in counts if k.startswith(name + ".")]:
                del counts[other]
        out: list[Any] = []
        for depth in range(len(parts)):
            prefix = ".".join(parts[: depth + 1])
            out.append(parts[depth])
            if prefix in counts:
                out.append(counts[prefix] - 1)
        return tuple(out)

    def position(self, loc: tuple[Any, ...], *, on_value: bool = True) -> tuple[int | None, int | None]:
        """The line and column of ``loc``, or of its nearest parent the file names; (None, None) if none."""
        loc = tuple("from" if p == "from_" else p for p in loc)
        exact = True
        while loc:
            if loc in self._at:
                line, key_column, value_column = self._at[loc]
                return line, value_column if on_value and exact else key_column
            loc, exact = loc[:-1], False
        return None, None

    def find(self, loc: tuple[Any, ...]) -> int | None:
        return self.position(loc)[0]


def _elements(source: list[str], row: int, start: int) -> list[tuple[int, int]]:
    """Where each entry of the array starting at ``source[row][start]`` begins (1-based line, column)."""
    if source[row][start:start + 1] != "[":
        return []
    found: list[tuple[int, int]] = []
    depth, quote, expect, column = 0, "", False, start
    while row < len(source):
        line = source[row]
        while column < len(line):
            char = line[column]
            if quote:
                column += 2 if char == "\\" and quote == '"' else 1
                quote = "" if char == quote else quote
                continue
            if char == "#":
                break
            if depth == 1 and expect and not char.isspace() and char not in ",]":
                found.append((row + 1, column + 1))
                expect = False
            if char in "[{":
                depth += 1
                expect = expect or depth == 1
            elif char in "]}":
                depth -= 1
                if depth == 0:
                    return found
            elif char == "," and depth == 1:
                expect = True
            elif char in "\"'":
                quote = char
            column += 1
        row, column = row + 1, 0
    return found


# --- cross-field rules, read from the file's data so that they hold even when a section is wrong -----


def _entries(data: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    items = data.get(key) if isinstance(data, dict) else None
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)] if isinstance(items, list) else []


def _duplicate_reader_names(data: dict[str, Any]) -> list[Finding]:
    """A second reader of a name: the outbox and the digest history are filed by reader name."""
    seen: dict[str, int] = {}
    out = []
    for index, reader in _entries(data, "readers"):
        name = reader.get("name")
        if not isinstance(name, str):
            continue
        # The database keys a reader's history by name, ignoring case: alice and Alice are one reader.
        first = seen.get(name.casefold())
        if first is not None:
            other = data["readers"][first].get("name")
            why = (f"{name!r} is also readers[{first}]" if other == name else
                   f"{other!r} and {name!r} differ only by case: names ignore case, so they would be one reader")
            out.append(Finding(("readers", index, "name"), f"reader names must be unique: {why}"))
        seen.setdefault(name.casefold(), index)
    return out


def _duplicate_rule_names(data: dict[str, Any]) -> list[Finding]:
    """A digest files each paper under its rule's or search's name: a reader's names must tell them apart."""
    out = []
    for r, reader in _entries(data, "readers"):
        seen: set[str] = set()
        for kind in ("rules", "searches"):
            for index, item in _entries(reader, kind):
                name = item.get("name")
                if isinstance(name, str) and name in seen:
                    out.append(Finding(("readers", r, kind, index, "name"),
                                       f"rule and search names must be unique within a reader: {name!r} is taken"))
                if isinstance(name, str):
                    seen.add(name)
    return out


# --- warnings: legal, but probably not what was meant ------------------------------------------


def _address_warnings(data: dict[str, Any]) -> list[Finding]:
    """Addresses whose domain has no dot (``alice@example``): mail to them bounces, except to localhost."""
    places: list[tuple[tuple[str | int, ...], Any]] = []
    for section, key in (("paperwatch", "admin"), ("mail", "from")):
        value = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        places.append(((section, key), value))
    places += [(("readers", i, "email"), reader.get("email")) for i, reader in _entries(data, "readers")]
    out = []
    for loc, value in places:
        if not isinstance(value, str):
            continue
        try:
            domain = parse_mailbox(value).domain
        except ValueError:  # an error of its own, reported with the structure
            continue
        if "." not in domain and domain.lower() != "localhost":
            out.append(Finding(loc, f"the domain {domain!r} has no dot: mail to {value!r} will probably bounce "
                                    f"(did you mean {domain}.org or {domain}.com?)", warning=True))
    return out


def _idle_reader_warnings(data: dict[str, Any]) -> list[Finding]:
    """A reader with neither rules nor searches is sent nothing, ever."""
    return [Finding(("readers", i), "no rules and no searches: this reader will never be sent a paper",
                    warning=True, on_value=False)
            for i, reader in _entries(data, "readers")
            if not reader.get("rules") and not reader.get("searches")]
