"""The TOML config file → a frozen, validated ``Config``.

Validation is pydantic's (typed models with ``extra="forbid"``): every problem in the file
is reported at once, one line each, as ``FILE:LINE: key.path: message``, unknown keys with a
suggestion. Paths are resolved here, so the rest of the program never sees a relative one.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from paperwatch.address import parse_mailbox
from paperwatch.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str | float) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"6h"``, ``"1d"``, ``"1.5s"`` or a bare number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        found = _DURATION.match(str(text))
        if not found:
            raise ValueError(f"{text!r} is not a duration like 90s, 30m, 6h or 1d")
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if seconds <= 0:
        raise ValueError("must be more than zero")
    return seconds


def _schedule(text: str) -> str:
    """An interval (``"30m"``) or a 5-field cron expression, read as crontab(5) reads it."""
    from paperwatch.schedule import check  # schedule imports this module

    if not _DURATION.match(text) and len(text.split()) != 5:
        raise ValueError(f"{text!r} is neither an interval like 30m nor a 5-field cron expression")
    check(text)
    return text


def _timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use a name like Europe/Berlin or UTC)") from None
    return name


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


class SourceConfig(_Section):
    base_url: Annotated[str, AfterValidator(_base_url)] = "https://huggingface.co"
    poll: Schedule = "30m"
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
    send_empty: bool = False
    rules: tuple[Rule, ...] = ()
    searches: tuple[SavedSearch, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> Reader:
        # A digest files each paper under its rule's or search's name: the names must tell them apart.
        names = [r.name for r in self.rules] + [s.name for s in self.searches]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"rule and search names must be unique within a reader: {', '.join(twice)}")
        return self


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

    @field_validator("readers")
    @classmethod
    def _unique_reader_names(cls, readers: tuple[Reader, ...]) -> tuple[Reader, ...]:
        names = [r.name for r in readers]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"reader names must be unique: {', '.join(twice)}")
        return readers


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
    text, data = "", {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError([f"{path}: not UTF-8 text ({exc.reason})"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([_toml_error(path, exc)]) from exc
    try:
        config = Config.model_validate({**data, "path": path})
    except ValidationError as exc:
        raise ConfigError(_problems(exc, path, text)) from None
    return _resolved(config)


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
    """``problem`` prefixed with ``FILE:LINE`` of the key at ``loc`` (or just ``FILE``), as load_config does."""
    if config.path is None:
        return problem
    try:
        line = _KeyLines(config.path.read_text(encoding="utf-8")).find(loc)
    except OSError:
        line = None
    return f"{config.path}:{line}: {problem}" if line else f"{config.path}: {problem}"


def _toml_error(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    message = str(exc)
    found = re.search(r"\(at line (\d+), column \d+\)", message)
    if found:
        return f"{path}:{found.group(1)}: {message[:found.start()].strip()}"
    return f"{path}: {message}"


def _problems(exc: ValidationError, path: Path | None, text: str) -> list[str]:
    lines = _KeyLines(text)
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        line = lines.find(loc)
        where = f"{path}:{line}" if path and line else str(path or "defaults")
        problems.append((line or 0, f"{where}: {_key_path(loc)}: {_message(error, loc)}"))
    return [text for _line, text in sorted(problems, key=lambda p: p[0])]


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
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "greater_than": ("more than", "gt"),
    "less_than_equal": ("at most", "le"),
    "less_than": ("less than", "lt"),
}


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out.replace("from_", "from") or "(file)"


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
    """Maps a key path to the line of the file that set it; tomllib keeps no positions."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[Any, ...], int] = {}
        table: tuple[Any, ...] = ()
        counts: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                table = self._table(header.group(1), header.group(2), counts)
                self._lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                self._lines.setdefault((*table, key.group(1)), number)

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

    def find(self, loc: tuple[Any, ...]) -> int | None:
        loc = tuple("from" if p == "from_" else p for p in loc)
        while loc:
            if loc in self._lines:
                return self._lines[loc]
            loc = loc[:-1]
        return None
