"""Render the reference digest and screenshot it in headless Chromium: light, phone and dark.

Run it after changing a template, look at every picture, and commit them with the template:

    python tests/render_reference.py [--chromium PATH] [--tall DIR]

It writes ``data/digest-reference.html`` and ``.txt`` (which ``test_digest.py`` compares the
templates' output with) and ``data/digest-{light,phone,dark}.png``. ``--tall DIR`` also puts
full-length screenshots in DIR, to look at every card before committing. Not run by the
test suite: it needs a browser.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import DATA, HTML, TEXT, render_reference

# name → (width, height, extra Chromium flags). 390 px is a common phone's CSS width.
SHOTS: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "light": (1000, 1800, ()),
    "phone": (390, 1900, ()),
    "dark": (1000, 1800, ("--force-dark-mode", "--blink-settings=preferredColorScheme=0")),
}


def screenshot(chromium: str, page: Path, out: Path, width: int, height: int, flags: tuple[str, ...]) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}", *flags,
             f"--screenshot={out}", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--tall", type=Path, metavar="DIR", help="also write full-length screenshots here")
    args = parser.parse_args()
    if not args.chromium:
        parser.error("no chromium found: pass --chromium PATH")
    rendered = render_reference()
    DATA.mkdir(exist_ok=True)
    HTML.write_text(rendered.html, encoding="utf-8")
    TEXT.write_text(rendered.text, encoding="utf-8")
    for name, (width, height, flags) in SHOTS.items():
        screenshot(args.chromium, HTML, DATA / f"digest-{name}.png", width, height, flags)
        if args.tall:
            args.tall.mkdir(parents=True, exist_ok=True)
            screenshot(args.chromium, HTML, args.tall / f"digest-{name}-full.png", width, 16000, flags)
    print(f"{rendered.subject}: {len(rendered.html.encode())} bytes of HTML, {rendered.omitted} left out")
    print(f"wrote {HTML}, {TEXT} and {', '.join(f'digest-{n}.png' for n in SHOTS)}: look at them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
