"""The ``paperwatch`` command as users run it: a real process against the fake site."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import write_config
from fakehf import FakeHF, Fault
from paperwatch.cli import Progress
from paperwatch.pipeline import DayReport
from support import paperwatch

pytestmark = pytest.mark.e2e

START = dt.date(2025, 2, 3)  # a Monday
WEEKS = 3




def expected_json(item: dict[str, Any], day: dt.date) -> dict[str, Any]:
    """What ``papers --json`` must say of a served item, written out independently of the parser."""
    paper = item["paper"]

    def text(value: Any) -> Any:
        return " ".join(value.split()) if isinstance(value, str) else None

    org = item.get("organization") or paper.get("organization")
    return {
        "id": paper["id"],
        "title": text(item.get("title") or paper["title"]),
        "summary": text(paper.get("summary")),
        "authors": [text(a["name"]) for a in paper.get("authors", [])],
        "daily_date": day.isoformat(),
        "published_at": paper.get("publishedAt"),
        "upvotes": paper.get("upvotes"),
        "comments": item.get("numComments"),
        "github_repo": paper.get("githubRepo"),
        "github_stars": paper.get("githubStars"),
        "project_page": paper.get("projectPage"),
        "organization": (org.get("fullname") or org.get("name")) if org else None,
        "ai_keywords": paper.get("ai_keywords", []),
        "ai_summary": text(paper.get("ai_summary")),
        "url": f"https://huggingface.co/papers/{paper['id']}",
    }


async def test_backfill_through_429s_and_5xx_stores_exactly_what_the_site_had(tmp_path: Path,
                                                                              fake_hf: FakeHF) -> None:
    days = [START + dt.timedelta(days=n) for n in range(7 * WEEKS)]
    weekdays = [d for d in days if d.weekday() < 5]
    for n, day in enumerate(weekdays):
        fake_hf.days[day] = [FakeHF.make_item(day, i) for i in range(8 + n % 5)]
    fake_hf.fail_first(2, Fault.status(429, headers={"Retry-After": "0"}), Fault.status(503))
    config = write_config(tmp_path / "pw.toml", fake_hf.base_url, max_concurrency=2)

    code, out, err = await paperwatch("-c", str(config), "backfill", "--since", str(days[0]),
                                      "--until", str(days[-1]))
    assert code == 0, err
    assert f"{len(days)} days stored" in out and "0 failed" in out
    assert fake_hf.max_in_flight <= 2
    assert all(r.headers.get("User-Agent", "").startswith("paperwatch/") for r in fake_hf.requests)

    code, out, err = await paperwatch("-c", str(config), "papers", "--json", "--limit", "0")
    assert code == 0, err
    stored = {p["id"]: p for p in json.loads(out)}
    served = {i["paper"]["id"]: expected_json(i, day) for day in weekdays for i in fake_hf.items(day)}
    assert stored == served

    seen = len(fake_hf.requests)
    code, out, _ = await paperwatch("-c", str(config), "backfill", "--since", str(days[0]),
                                    "--until", str(days[-1]))
    assert code == 0 and f"{len(days)} already complete, 0 to fetch" in out
    assert len(fake_hf.requests) == seen, "a second backfill must not fetch complete days again"


async def test_fetch_reports_each_day_and_exits_1_when_one_failed(tmp_path: Path, fake_hf: FakeHF) -> None:
    good, bad = dt.date(2025, 3, 5), dt.date(2025, 3, 6)
    fake_hf.days[good] = [FakeHF.make_item(good, n) for n in range(4)]
    fake_hf.days[bad] = [FakeHF.make_item(bad, n) for n in range(4)]
    fake_hf.fail(f"/papers/date/{bad}", *[Fault.status(500)] * 10)
    fake_hf.fail(f"/api/daily_papers?date={bad}", *[Fault.status(500)] * 10)  # the fallback too
    config = write_config(tmp_path / "pw.toml", fake_hf.base_url, retries=1)
    code, out, err = await paperwatch("-c", str(config), "fetch", str(good), str(bad))
    assert code == 1
    assert f"{good}: 4 papers, 4 new" in out.splitlines()
    assert f"{bad}: failed: {fake_hf.base_url}/papers/date/{bad}: HTTP 500 (gave up after 2 tries)" in out
    assert "Traceback" not in err

    code, out, _ = await paperwatch("-c", str(config), "status", "--json")
    status = json.loads(out)
    assert status["papers"] == 4 and status["days"]["failed"] == 1
    assert status["failed_days"][0]["day"] == str(bad)


async def test_papers_search_and_filters(tmp_path: Path, fake_hf: FakeHF) -> None:
    day = dt.date(2025, 3, 5)
    fake_hf.days[day] = [FakeHF.make_item(day, n) for n in range(5)]
    target = fake_hf.items(day)[0]["paper"]
    config = write_config(tmp_path / "pw.toml", fake_hf.base_url)
    assert (await paperwatch("-c", str(config), "fetch", str(day)))[0] == 0
    word = max(re.findall(r"[A-Za-z]{6,}", target["title"]), key=len)
    code, out, _ = await paperwatch("-c", str(config), "papers", "--search", word, "--json")
    assert code == 0 and target["id"] in {p["id"] for p in json.loads(out)}
    code, out, _ = await paperwatch("-c", str(config), "papers", "--date", "2025-03-04", "--json")
    assert json.loads(out) == []
    code, out, _ = await paperwatch("-c", str(config), "papers", "--limit", "2")
    assert code == 0 and len([line for line in out.splitlines() if line.startswith("2025-03-05")]) == 2


async def test_papers_works_with_no_config_file_at_all(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "PAPERWATCH_CONFIG": "", "STATE_DIRECTORY": ""}
    code, out, err = await paperwatch("papers", "--json", env=env, cwd=tmp_path)
    assert (code, json.loads(out)) == (0, []), err
    assert (tmp_path / "data" / "paperwatch" / "paperwatch.db").exists()


async def test_a_broken_config_names_the_key_and_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "pw.toml"
    config.write_text('[source]\nmax_concurency = 2\nlookback_days = "three"\n')
    code, out, err = await paperwatch("-c", str(config), "fetch")
    assert code == 78 and out == ""
    assert f"{config}:2:1: source.max_concurency: unknown key, did you mean max_concurrency?" in err
    assert f"{config}:3:17: source.lookback_days" in err
    assert "Traceback" not in err


async def test_usage_errors_exit_2(tmp_path: Path) -> None:
    code, _, err = await paperwatch("fetch", "yesterday")
    assert code == 2 and "is not a date like 2025-03-05" in err


@pytest.mark.parametrize("journal", [True, False])
async def test_log_lines_carry_timestamps_except_under_the_journal(tmp_path: Path, fake_hf: FakeHF,
                                                                   journal: bool) -> None:
    day = dt.date(2025, 3, 5)
    fake_hf.days[day] = [FakeHF.make_item(day, 0)]
    config = write_config(tmp_path / "pw.toml", fake_hf.base_url)
    env = {"JOURNAL_STREAM": "8:12345" if journal else ""}
    code, _, err = await paperwatch("-v", "-c", str(config), "fetch", str(day), env=env)
    assert code == 0
    lines = [line for line in err.splitlines() if "paperwatch." in line]
    assert lines, err
    stamped = [bool(re.match(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", line)) for line in lines]
    assert stamped == [not journal] * len(lines)
    assert all(line.startswith("INFO paperwatch.") or not journal for line in lines)


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    report = DayReport(dt.date(2025, 3, 5), "u", "ok", papers=3, new=1)
    tty, plain = Tty(), io.StringIO()
    for stream in (tty, plain):
        bar = Progress(2, stream)
        bar.step(report)
        bar.step(report)
        bar.finish()
    assert tty.getvalue().count("\r") == 2 and "[" + "#" * 30 + "] 2/2 days" in tty.getvalue()
    assert plain.getvalue().splitlines() == ["[1/2] 2025-03-05: 3 papers, 1 new", "[2/2] 2025-03-05: 3 papers, 1 new"]


RULES = """
[[readers]]
name = "alice"
email = "alice@example.org"
[[readers.rules]]
name = "grokking"
keywords = ["grokking", "neural collapse"]
[[readers.rules]]
name = "people"
authors = ["Y. LeCun"]

[[readers]]
name = "bob"
email = "bob@example.org"
[[readers.rules]]
name = "pretraining"
keywords = ["pre-training"]
exclude = ["survey"]
"""


def names(*authors: str) -> list[dict[str, Any]]:
    return [{"_id": f"a{n}", "name": name, "hidden": False} for n, name in enumerate(authors)]


def rules_config(tmp_path: Path, base_url: str, rules: str = RULES) -> Path:
    path = write_config(tmp_path / "paperwatch.toml", base_url)
    path.write_text(path.read_text() + rules)
    return path


async def test_match_json_agrees_with_the_rules_on_papers_it_never_saw(tmp_path: Path, fake_hf: FakeHF) -> None:
    day = dt.date(2025, 3, 5)
    fake_hf.days[day] = [
        FakeHF.make_item(day, 0, id="2503.00001", title="Grokking in Shallow Networks", authors=names("Ann Lee")),
        FakeHF.make_item(day, 1, id="2503.00002", title="Pretraining at Scale", authors=names("Yann LeCun", "Bo Yu")),
        FakeHF.make_item(day, 2, id="2503.00003", title="A Survey of Pre Training", authors=names("Cy Dee")),
        FakeHF.make_item(day, 3, id="2503.00004", title="Organ Segmentation", authors=names("Yanis LeCunn"),
                         summary="Neural nets collapse; organs are segmented."),
        FakeHF.make_item(day, 4, id="2503.00005", title="Neural   Collapse Revisited", authors=names("Zoe Yu"),
                         summary="We study grokking."),
    ]
    path = rules_config(tmp_path, fake_hf.base_url)
    assert (await paperwatch("-c", str(path), "fetch", "2025-03-05"))[0] == 0
    code, out, err = await paperwatch("-c", str(path), "match", "--json")
    assert code == 0, err
    got = {(m["reader"], m["paper"]): m["rules"] for m in json.loads(out)}
    assert got == {("alice", "2503.00001"): ["grokking"], ("alice", "2503.00002"): ["people"],
                   ("bob", "2503.00002"): ["pretraining"], ("alice", "2503.00005"): ["grokking"]}
    why = {(m["paper"], w["term"], w["field"], w["text"]) for m in json.loads(out) for w in m["why"]}
    assert ("2503.00005", "neural collapse", "title", "Neural Collapse") in why
    assert ("2503.00005", "grokking", "abstract", "grokking") in why
    code, out, err = await paperwatch("-c", str(path), "match", "--reader", "bob", "--since", "2025-03-01")
    assert code == 0 and "bob / pretraining: would have matched 1 paper since 2025-03-01" in out
    assert "alice" not in out


async def test_match_json_writes_control_characters_of_paper_texts_escaped(tmp_path: Path) -> None:
    """What a paper holds reaches the terminal only as text: match --json escapes DEL, C1 and bidi
    controls in titles and hit texts as every other output does, and leaves the rest as it is."""
    from paperwatch.models import DayPage, PageSource, Paper
    from paperwatch.store import DayFetch, Store

    day = dt.date(2025, 3, 5)
    papers = (Paper(id="2503.00001", title="Grokking \x7f and \x9b[31m \u202egrokking", summary="grokking\x85!",
                    daily_date=day),
              Paper(id="2503.00002", title="Plain grokking, “quoted”", daily_date=day))
    path = rules_config(tmp_path, "http://127.0.0.1:9")
    async with await Store.open(tmp_path / "paperwatch.db") as store:
        await store.record_day(DayFetch(day, "http://127.0.0.1:9/papers/date/2025-03-05", 200,
                                        page=DayPage(day, papers, PageSource.JSON)))
    code, out, err = await paperwatch("-c", str(path), "match", "--json")
    assert code == 0, err
    assert "Grokking \\x7f and \\x9b[31m \\u202egrokking" in out and "Plain grokking, “quoted”" in out
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", out)


async def test_check_names_every_rule_mistake_with_its_line_and_exits_78(tmp_path: Path) -> None:
    rules = """
[[readers.rules]]
name = "bad regex"
keywords = ["re:(unclosed"]
[[readers.rules]]
name = "empty"
[[readers.rules]]
name = "typo"
keywords = ["x"]
fields = ["titel"]
[[readers.rules]]
name = "query"
query = "(grokking AND"
"""
    path = rules_config(tmp_path, "http://127.0.0.1:9")
    lines = path.read_text().count("\n")
    path.write_text(path.read_text() + rules)
    code, out, err = await paperwatch("-c", str(path), "check")
    assert code == 78 and out == ""
    assert err.splitlines() == [
        f"{path}:{lines + 4}:13: readers.bob.rules.bad regex.keywords[0]: invalid regular expression "
        "'(unclosed': missing ), unterminated subpattern at position 0",
        f"{path}:{lines + 5}:1: readers.bob.rules.empty: empty rule: give keywords, authors, organizations or a query",
        f"{path}:{lines + 10}:11: readers.bob.rules.typo.fields[0]: unknown field 'titel', did you mean title?",
        f"{path}:{lines + 13}:9: readers.bob.rules.query.query: expected a word, a phrase or '(' but the query ends "
        "at position 13",
        f"{path}: 4 problems, 0 warnings",
    ]
    path.write_text(path.read_text().split("\n[[readers.rules]]\nname = \"bad regex\"")[0])
    code, out, err = await paperwatch("-c", str(path), "check")
    assert code == 0, err
    assert "readers: 2, rules: 3" in out and "mail: Maildir" in out
