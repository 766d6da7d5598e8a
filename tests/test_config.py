"""Config loading: defaults, path resolution, lookup order, and every mistake reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from paperwatch.check import inspect_config
from paperwatch.config import find_config_file, load_config
from paperwatch.errors import ConfigError
from paperwatch.timespec import parse_duration

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("PAPERWATCH_CONFIG", "STATE_DIRECTORY", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "pw.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.exit_code == 78
    return [p.removeprefix(f"{path}") for p in caught.value.problems]


def test_no_file_means_the_embedded_defaults(tmp_path: Path) -> None:
    config = load_config(None)
    assert config.database == tmp_path / "data" / "paperwatch" / "paperwatch.db"
    assert config.mail.maildir == tmp_path / "data" / "paperwatch" / "mail"
    assert config.mail.smtp is None and config.readers == ()
    assert (config.source.base_url, config.source.poll, config.source.lookback_days) == ("https://huggingface.co",
                                                                                           "30m", 3)
    assert (config.source.max_concurrency, config.source.requests_per_minute) == (2, 30)


def test_systemd_state_directory_is_the_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:{tmp_path}/other")
    assert load_config(None).database == tmp_path / "state" / "paperwatch.db"


def test_relative_paths_are_relative_to_the_files_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "pw.toml"
    path.write_text('[paperwatch]\ndatabase = "db/p.db"\n[mail]\nmaildir = "inbox"\n')
    config = load_config(path)
    assert config.database == folder / "db" / "p.db"
    assert config.mail.maildir == folder / "inbox"


def test_the_example_file_loads_as_shipped() -> None:
    config = load_config(ROOT / "config.example.toml")
    (reader,) = config.readers
    assert reader.name == "alice" and reader.rules[0].keywords == ("neural collapse", "grokking")
    assert config.source.max_wait == 300.0 and config.source.timeout == 30.0


def test_every_mistake_is_reported_at_once_with_file_line_and_key(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
[paperwatch]
timezone = "Mars/Base"

[source]
max_concurency = 2
lookback_days = "three"
poll = "every day"
base_url = "ftp://example.org"
requests_per_minute = 0

[[readers]]
name = "alice"
email = "not-an-address"

[[readers.rules]]
name = "x"
min_upvotes = -1
""")
    assert found == [
        ":2:12: paperwatch.timezone: unknown time zone 'Mars/Base' (use a name like Europe/Berlin or UTC)",
        ":5:1: source.max_concurency: unknown key, did you mean max_concurrency?",
        ":6:17: source.lookback_days: expected a whole number, got 'three'",
        ":7:8: source.poll: 'every day' is neither an interval like 30m nor a 5-field cron expression",
        ":8:12: source.base_url: 'ftp://example.org' is not an http(s) URL with a host and no query",
        ":9:23: source.requests_per_minute: must be more than 0, got 0",
        ":13:9: readers.alice.email: 'not-an-address' is not an email address",
        ":17:15: readers.alice.rules.x.min_upvotes: must be at least 0, got -1",
    ]


def test_lines_are_found_in_the_right_array_entry(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
[[readers]]
name = "a"
email = "a@x.org"
[[readers.rules]]
name = "one"
[[readers]]
name = "b"
email = "b@x.org"
[[readers.rules]]
name = "ok"
[[readers.rules]]
name = "two"
min_upvotes = "many"
""")
    assert found == [":13:15: readers.b.rules.two.min_upvotes: expected a whole number, got 'many'"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[source\nx = 1', ":1:8: (file): expected ']' at the end of a table declaration"),
        ('[mail.smtp]\nhost = "smtp.example.org"\npassword = "hunter2"\n',
         ":1:1: mail.smtp: password: passwords do not belong in the config file; use password_file, "
         "password_env or a systemd credential"),
        ('[mail.smtp]\nhost = "smtp.example.org"\nsecurity = "none"\n',
         ':1:1: mail.smtp: security = "none" sends mail unencrypted: allowed only to a loopback host, '
         "not smtp.example.org"),
        ('[mail.smtp]\nhost = "smtp.example.org"\nsecurity = "ssl"\n',
         ":3:12: mail.smtp.security: 'ssl' is not one of starttls, tls, none"),
        ("[mail.smtp]\nport = 25\n", ":1:1: mail.smtp.host: required key is missing"),
        ('[[readers]]\nname = "a"\nemail = "a@x.org"\n[[readers]]\nname = "a"\nemail = "b@x.org"\n',
         ":5:8: readers.a.name: reader names must be unique: 'a' is also readers[0]"),
        ("[sourc]\npoll = '1h'\n", ":1:1: sourc: unknown table, did you mean [source]?"),
        ("[source]\ntimeout = \"soon\"\n", ":2:11: source.timeout: 'soon' is not a duration like 90s, 30m, 6h or 1d"),
    ],
)
def test_each_kind_of_mistake_reads_clearly(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


def test_the_password_is_never_echoed(tmp_path: Path) -> None:
    found = problems(tmp_path, '[mail.smtp]\nhost = "h"\npassword = "hunter2"\n')
    assert "hunter2" not in "".join(found)


def test_security_none_is_fine_to_loopback(tmp_path: Path) -> None:
    path = tmp_path / "pw.toml"
    path.write_text('[mail.smtp]\nhost = "127.0.0.1"\nport = 2525\nsecurity = "none"\n')
    smtp = load_config(path).mail.smtp
    assert smtp is not None and smtp.security == "none"


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("6h", 21600), ("1d", 86400),
                                               ("1.5s", 1.5), (12, 12), ("0.05", 0.05)])
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_lookup_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    xdg = tmp_path / "xdg" / "paperwatch"
    xdg.mkdir(parents=True)
    (xdg / "paperwatch.toml").write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_config_file(None) == xdg / "paperwatch.toml"
    (tmp_path / "paperwatch.toml").write_text("")
    assert find_config_file(None) == Path("paperwatch.toml")
    env_file = tmp_path / "env.toml"
    env_file.write_text("")
    monkeypatch.setenv("PAPERWATCH_CONFIG", str(env_file))
    assert find_config_file(None) == env_file
    assert find_config_file(tmp_path / "paperwatch.toml") == tmp_path / "paperwatch.toml"


def test_a_named_file_that_does_not_exist_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        find_config_file(tmp_path / "missing.toml")
    monkeypatch.setenv("PAPERWATCH_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match="gone.toml: no such config file"):
        find_config_file(None)


TEN_MISTAKES = """\
[paperwatch]
timezone = "America/New York"

[source]
max_concurency = 2
lookback_days = "three"

[mail.smtp]
host = "smtp.example.org"
security = "startls"

[[readers]]
name = "alice"
email = "alice@example"
send_empty = "yes"

[[readers.rules]]
name = "regex"
keywords = ["re:(unclosed", "diffus*ion", ""]
authors = ["LeCun, Yann"]
fields = ["titel"]

[[readers.rule]]
name = "x"

[[readers]]
name = "alice"
email = "a2@example.org"
[[readers.rules]]
name = "q"
query = "(grokking AND"
"""


def test_check_reports_structure_rules_and_cross_field_mistakes_in_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "pw.toml"
    path.write_text(TEN_MISTAKES)
    found = inspect_config(path)
    assert found.config is None
    assert [line.removeprefix(str(path)) for line in found.errors] == [
        ":2:12: paperwatch.timezone: unknown time zone 'America/New York', did you mean America/New_York?",
        ":5:1: source.max_concurency: unknown key, did you mean max_concurrency?",
        ":6:17: source.lookback_days: expected a whole number, got 'three'",
        ":10:12: mail.smtp.security: 'startls' is not one of starttls, tls, none, did you mean starttls?",
        ":15:14: readers.alice.send_empty: expected true or false, got 'yes'",
        ":19:13: readers.alice.rules.regex.keywords[0]: invalid regular expression '(unclosed': missing ), "
        "unterminated subpattern at position 0",
        ":19:29: readers.alice.rules.regex.keywords[1]: 'diffus*ion': '*' may only end a word, as in diffus*",
        ":19:43: readers.alice.rules.regex.keywords[2]: '' has no words to match",
        ":20:12: readers.alice.rules.regex.authors[0]: 'LeCun, Yann': give one author per entry, given names "
        "first, as in 'Yann LeCun'",
        ":21:11: readers.alice.rules.regex.fields[0]: unknown field 'titel', did you mean title?",
        ":23:1: readers.alice.rule: unknown table, did you mean [[readers.rules]]?",
        ":27:8: readers.alice.name: reader names must be unique: 'alice' is also readers[0]",
        ":31:9: readers.alice.rules.q.query: expected a word, a phrase or '(' but the query ends at position 13",
    ]
    assert [line.removeprefix(str(path)) for line in found.warnings] == [
        ":14:9: readers.alice.email: warning: the domain 'example' has no dot: mail to 'alice@example' will "
        "probably bounce (did you mean example.org or example.com?)",
    ]


def test_a_misspelt_rule_key_hides_no_other_mistake_of_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "pw.toml"
    path.write_text('[[readers]]\nname = "a"\nemail = "a@x.org"\n[[readers.rules]]\nname = "r"\n'
                    'keywrods = ["x"]\nauthors = ["LeC*"]\n')
    errors = [line.removeprefix(str(path)) for line in inspect_config(path).errors]
    assert errors[0] == ":6:1: readers.a.rules.r.keywrods: unknown key, did you mean keywords?"
    assert errors[1].startswith(":7:12: readers.a.rules.r.authors[0]: ")
    assert len(errors) == 2  # and no "empty rule" for the misspelt keywords


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[paperwatch]\ntimezone = Europe/Berlin\n",
         ':2:12: paperwatch.timezone: invalid value; text needs quotes, as in timezone = "Europe/Berlin"'),
        ('[source]\npoll = "1h"\n\npoll = "2h"\n',
         ":4:12: source.poll: set twice; the first is on line 2: keep one of them"),
        ("[source]\npoll = '1h'\n[source]\n", ":3:8: source: [source] is declared twice (first on line 1): merge them"),
        ("[paperwatch]\ntimezone = 'UTC'\nadmin = ops@\n", ":3:9: paperwatch.admin: invalid value; text needs quotes, "
                                                           'as in admin = "ops@"'),
    ],
)
def test_toml_slips_name_the_key_the_column_and_the_fix(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


def test_send_empty_takes_only_true_or_false(tmp_path: Path) -> None:
    found = problems(tmp_path, '[[readers]]\nname = "a"\nemail = "a@x.org"\nsend_empty = "yes"\n')
    assert found == [":4:14: readers.a.send_empty: expected true or false, got 'yes'"]


def test_warnings_do_not_stop_a_config_from_loading(tmp_path: Path) -> None:
    path = tmp_path / "pw.toml"
    path.write_text('[[readers]]\nname = "a"\nemail = "a@example"\n[mail]\nfrom = "pw <pw@localhost>"\n')
    found = inspect_config(path)
    assert found.errors == [] and found.config is not None and load_config(path).readers[0].email == "a@example"
    assert [w.removeprefix(str(path)) for w in found.warnings] == [
        ":1:1: readers.a: warning: no rules and no searches: this reader will never be sent a paper",
        ":3:9: readers.a.email: warning: the domain 'example' has no dot: mail to 'a@example' will probably bounce "
        "(did you mean example.org or example.com?)",
    ]


SMTP_LOGIN = '[mail.smtp]\nhost = "smtp.example.org"\nusername = "me@example.org"\n'


def test_a_password_from_a_systemd_credential_is_a_warning_outside_the_service(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "pw.toml"
    path.write_text(SMTP_LOGIN)
    path.chmod(0o600)
    found = inspect_config(path)
    assert found.errors == [] and found.config is not None
    assert "warning: no password to check here: it comes from the systemd credential smtp-password" in \
        found.warnings[0]
    creds = tmp_path / "creds"
    creds.mkdir()
    found = inspect_config(path, credentials=creds)
    assert found.config is None and "has no credential smtp-password" in found.errors[0]
    (creds / "smtp-password").write_text("secret\n")
    (creds / "smtp-password").chmod(0o600)
    found = inspect_config(path, credentials=creds)
    assert (found.errors, found.warnings) == ([], [])
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert inspect_config(path).warnings == []


def test_a_rule_named_like_a_key_path_is_found_in_the_file(tmp_path: Path) -> None:
    """Both the one-pass check and the daemon's start-up find a rule's mistake at its line,
    whatever the rule is called."""
    from paperwatch.delivery import prepare
    from paperwatch.errors import ConfigError

    path = tmp_path / "paperwatch.toml"
    path.write_text('[[readers]]\nname = "bob"\nemail = "bob@example.org"\n\n[[readers.rules]]\n'
                    'name = "a.b: c"\nkeywords = ["fine", "re:("]\n')
    found = inspect_config(path)
    assert len(found.errors) == 1 and found.errors[0].startswith(f"{path}:7:"), found.errors
    assert "readers.bob.rules.a.b: c.keywords[1]: invalid regular expression" in found.errors[0]
    with pytest.raises(ConfigError) as caught:
        prepare(load_config(path))
    assert caught.value.problems[0].startswith(f"{path}:7"), caught.value.problems
