"""Saved searches: a query on the site's search watched like a Scholar alert.

Results present at a search's first run are its baseline and never mailed; a result that shows
up later is mailed once, under the search's name, to every reader who saved it. The JSON API is
read first, the search page's ``searchResults`` when the API fails; a page without them is a
changed page, and the daily pipeline goes on regardless.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fakehf import FakeHF, Fault
from paperwatch.config import load_config
from smtpserver import Recorder, SmtpServer
from support import YESTERDAY, ids, paperwatch, write_config

QUERY = "deep networks"
RESULTS = FakeHF.sample_items("api-papers-search-q-deep-networks.json")

READERS = f"""
[[readers]]
name = "alice"
email = "alice@example.org"
[[readers.searches]]
name = "deep nets"
query = "{QUERY}"

[[readers]]
name = "bob"
email = "bob@example.org"
[[readers.rules]]
name = "grokking"
keywords = ["grokking"]
[[readers.searches]]
name = "deep nets too"
query = "{QUERY}"
"""


def results(*ids: str) -> list[dict[str, Any]]:
    by_id = {item["paper"]["id"]: item for item in RESULTS}
    return [by_id[i] for i in ids]


def mailed(recorder: Recorder, reader: str) -> Counter[str]:
    return Counter(p for m in recorder.messages_to(f"{reader}@example.org") for p in ids(m))


async def run_once(path: Path) -> tuple[int, str, str]:
    return await paperwatch("-c", str(path), "run", "--once")


@pytest.mark.e2e
async def test_only_results_added_after_the_first_run_are_mailed_once(tmp_path: Path) -> None:
    first = [item["paper"]["id"] for item in RESULTS[:8]]
    added, removed = RESULTS[8]["paper"]["id"], first[3]
    recorder = Recorder()
    async with FakeHF() as hf:
        hf.days[YESTERDAY] = FakeHF.sample_items()[:5]
        hf.searches[QUERY] = results(*first)
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp, readers=READERS)
            code, out, err = await run_once(path)
            assert code == 0, err
            assert f"search '{QUERY}': 8 results, 8 new" in out
            assert not mailed(recorder, "alice")  # the baseline is recorded, not mailed

            # one added (in the middle), one removed, the rest reordered
            later = [*reversed(first[:3]), added, *first[4:]]
            hf.searches[QUERY] = results(*later)
            assert (await run_once(path))[0] == 0
            hf.searches[QUERY] = results(*later, removed)  # back again: not new
            assert (await run_once(path))[0] == 0
            assert (await run_once(path))[0] == 0
    assert mailed(recorder, "alice") == Counter({added: 1})
    assert mailed(recorder, "bob")[added] == 1
    [message] = recorder.messages_to("alice@example.org")
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    title = next(item["title"] for item in RESULTS if item["paper"]["id"] == added)
    assert message["Subject"] == f"1 new paper: {' '.join(title.split())}"
    assert "== deep nets ==" in text and f"deep nets: a new result of your search “{QUERY}”" in text
    assert "2013" not in text.splitlines()[0]  # the headline covers the polled days, not the result's
    requests = [r for r in hf.requests if "search" in r.path or r.query.get("q")]
    assert len(requests) == 4, "one request per poll for a query two readers saved"
    assert all(r.path == "/api/papers/search" for r in requests)


@pytest.mark.e2e
async def test_a_paper_matched_by_a_rule_and_a_search_is_mailed_once(tmp_path: Path) -> None:
    grok = next(item for item in RESULTS if "grok" in item["paper"]["title"].lower())
    recorder = Recorder()
    async with FakeHF() as hf:
        hf.searches[QUERY] = [item for item in RESULTS[:3] if item is not grok]
        with SmtpServer(recorder) as smtp:
            path = write_config(tmp_path, hf, smtp=smtp, readers=READERS)
            assert (await run_once(path))[0] == 0
            hf.searches[QUERY] = [*hf.searches[QUERY], grok]
            hf.days[YESTERDAY] = [{**grok, "paper": {**grok["paper"], "submittedOnDailyAt": f"{YESTERDAY}T00:00:00.000Z"}}]
            assert (await run_once(path))[0] == 0
            assert (await run_once(path))[0] == 0
    assert mailed(recorder, "bob") == Counter({grok["paper"]["id"]: 1})
    [message] = recorder.messages_to("bob@example.org")
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "grokking" in text and "deep nets too" in text  # listed under one, "also matched" the other


@pytest.mark.e2e
async def test_the_search_page_is_the_fallback_and_gives_the_same_results(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        hf.searches[QUERY] = RESULTS
        hf.fail("/api/papers/search", *[Fault.status(500)] * 20)
        path = write_config(tmp_path, hf, readers=READERS, mail={})
        code, out, err = await run_once(path)
        assert code == 0, err
        assert f"search '{QUERY}': {len(RESULTS)} results, {len(RESULTS)} new (read from the search page)" in out
        code, out, _ = await paperwatch("-c", str(path), "papers", "--json", "--search", "grok")
    stored = {p["id"]: p for p in json.loads(out)}
    grok = [item for item in RESULTS if "grok" in (item["paper"]["title"] + item["paper"]["summary"]).lower()]
    assert grok and set(stored) >= {item["paper"]["id"] for item in grok}
    one = stored[grok[0]["paper"]["id"]]
    assert one["daily_date"] == grok[0]["paper"]["submittedOnDailyAt"][:10]  # a search result keeps its own day
    assert one["summary"] == " ".join(grok[0]["paper"]["summary"].split())


@pytest.mark.e2e
async def test_a_search_page_without_results_is_a_changed_page_and_the_days_go_on(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        hf.days[YESTERDAY] = FakeHF.sample_items()[:5]
        hf.searches[QUERY] = RESULTS
        hf.fail("/api/papers/search", *[Fault.status(503)] * 20)
        hf.search_page_mode = "no_results"
        path = write_config(tmp_path, hf, readers=READERS, mail={})
        code, out, err = await run_once(path)
        assert code == 1
        assert f"{YESTERDAY}: 5 papers, 5 new" in out
        assert f"search '{QUERY}': failed:" in out and "changed shape" in out and "searchResults" in out
        code, out, _ = await paperwatch("-c", str(path), "status", "--json")
    status = json.loads(out)
    [search] = status["searches"]
    assert search["query"] == QUERY and search["outcome"] == "failed" and search["readers"] == ["alice", "bob"]
    assert "changed shape" in search["error"]
    assert status["papers"] == 5 and status["days"]["failed"] == 0


@pytest.mark.e2e
async def test_match_and_preview_show_search_results(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        hf.searches[QUERY] = RESULTS[:3]
        path = write_config(tmp_path, hf, readers=READERS, mail={})
        assert (await run_once(path))[0] == 0
        hf.searches[QUERY] = RESULTS[:4]
        code, out, err = await paperwatch("-c", str(path), "fetch")  # days only: the search has not run again
        code, out, _ = await paperwatch("-c", str(path), "match", "--json", "--reader", "alice")
        assert json.loads(out) == []  # the baseline is no match
        code, out, err = await paperwatch("-c", str(path), "digest", "--preview", str(tmp_path / "before"))
        assert "alice: nothing to send" in out
        config = load_config(path)
        from paperwatch.fetch import Fetcher
        from paperwatch.pipeline import fetch_searches
        from paperwatch.store import Store

        async with await Store.open(config.database) as store, Fetcher(config.source) as fetcher:
            await fetch_searches(fetcher, store, hf.base_url, [QUERY])
        code, out, _ = await paperwatch("-c", str(path), "match", "--json")
        new = RESULTS[3]["paper"]["id"]
        got = {(m["reader"], m["paper"]): m for m in json.loads(out) if "grokking" not in m["rules"]}
        assert set(got) == {("alice", new), ("bob", new)}
        assert got[("alice", new)]["rules"] == ["deep nets"]
        assert got[("alice", new)]["why"][0]["field"] == "search"
        code, out, _ = await paperwatch("-c", str(path), "match", "--reader", "alice")
        assert f"alice / deep nets: the search '{QUERY}' found 1 new paper since it was saved" in out
        code, out, err = await paperwatch("-c", str(path), "digest", "--preview", str(tmp_path / "after"))
        assert code == 0, err
    html = (tmp_path / "after" / "alice.html").read_text()
    assert new in html and "deep nets" in html


@pytest.mark.e2e
async def test_check_validates_searches_like_rules(tmp_path: Path) -> None:
    bad = READERS.replace(f'query = "{QUERY}"\n\n[[readers]]', 'query = "   "\nmin_upvotes = -1\n\n[[readers]]')
    bad = bad.replace('name = "deep nets too"', 'name = "grokking"')
    async with FakeHF() as hf:
        path = write_config(tmp_path, hf, readers=bad, mail={})
        code, out, err = await paperwatch("-c", str(path), "check")
    assert code == 78 and out == ""
    lines = err.splitlines()
    assert any("readers.alice.searches.deep nets.query: must not be empty" in line for line in lines), err
    assert any("readers.alice.searches.deep nets.min_upvotes: must be at least 0" in line for line in lines), err
    assert any("readers.bob.searches.grokking.name: rule and search names must be unique within a reader: "
               "'grokking' is taken" in line for line in lines), err
    assert all(line.startswith(f"{path}:") for line in lines)


@pytest.mark.e2e
async def test_status_shows_each_search(tmp_path: Path) -> None:
    async with FakeHF() as hf:
        hf.searches[QUERY] = RESULTS[:5]
        path = write_config(tmp_path, hf, readers=READERS, mail={})
        assert (await run_once(path))[0] == 0
        code, out, _ = await paperwatch("-c", str(path), "status")
    assert code == 0 and f"search '{QUERY}' (for alice, bob): 5 results at" in out
