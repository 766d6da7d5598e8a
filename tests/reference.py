"""The reference digest: one reader's day of sample papers, matched by the real matcher.

``render_reference.py`` renders it to ``data/digest-reference.html`` and screenshots it in a
browser; ``test_digest.py`` checks that the templates still render exactly that page.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from fakehf import SAMPLES
from paperwatch.config import Config, Reader
from paperwatch.delivery import digest_items
from paperwatch.digest import DigestInfo, DigestItem, Rendered, Templates
from paperwatch.models import Paper
from paperwatch.parse import parse_daily_api
from paperwatch.ruleset import compile_rules

SAMPLE = SAMPLES / "api-daily_papers-2025-03-05.json"
DATA = Path(__file__).resolve().parent / "data"
HTML = DATA / "digest-reference.html"
TEXT = DATA / "digest-reference.txt"
DAY = dt.date(2025, 3, 5)

READER = Reader.model_validate({
    "name": "alice",
    "email": "Alice Example <alice@example.org>",
    "rules": [
        {"name": "linear attention", "keywords": ["linear transformer", "linear attention", "delta rule"]},
        {"name": "people", "authors": ["Ilya Sutskever", "Yoshua Bengio", "J. Schmidhuber"]},
        {"name": "interpretability", "keywords": ["interpret*", "explain*", "black-box"]},
        {"name": "deep learning", "keywords": ["deep learning"]},
        {"name": "brains", "keywords": ["brain*", "EEG", "Alzheimer*"]},
        {"name": "optimisation", "keywords": ["learning rate", "optimization", "second-order"]},
    ],
})


def sample_papers() -> tuple[Paper, ...]:
    return parse_daily_api(SAMPLE.read_bytes(), day=DAY, url=str(SAMPLE)).papers


def reference_digest() -> tuple[DigestInfo, tuple[DigestItem, ...]]:
    """About twenty of the day's 26 papers, under six rules, as ``compose`` would pass them."""
    papers = sample_papers()
    items = digest_items(READER, papers, compile_rules(Config.model_validate({"readers": [READER.model_dump()]})))
    info = DigestInfo(reader=READER.name, email=READER.email, days=(DAY,), papers_seen=len(papers),
                      period_start=DAY - dt.timedelta(days=1), period_end=DAY)
    return info, items


def render_reference(templates: Templates | None = None) -> Rendered:
    return (templates or Templates.load(None)).render(*reference_digest())
