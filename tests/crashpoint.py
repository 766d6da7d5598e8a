"""``paperwatch`` that kills itself with SIGKILL at one step of the outbox: a real crash, on cue.

    python tests/crashpoint.py STEP [paperwatch arguments...]

STEP is one of:

  queued      right after the first digest is committed to the outbox, before any attempt
  accepted    after the SMTP server answered 250 to the first message, before it is marked sent
  maildir-tmp the first message written (fsynced) to the Maildir's tmp/, not yet renamed into new/
  maildir-new the first message renamed into new/, before it is marked sent

The test suite runs this as a subprocess and then restarts plain ``paperwatch`` on the same
database, as systemd would after a crash.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paperwatch import cli, mail, store

STEPS = ("queued", "accepted", "maildir-tmp", "maildir-new")


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def after(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, then death, on the first call."""

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = await function(*args, **kwargs)
        die()
        return result

    return wrapper


def arm(step: str) -> None:
    if step == "queued":
        store.Store.queue_digest = after(store.Store.queue_digest)  # type: ignore[method-assign]
    elif step == "accepted":
        mail.SmtpTransport.send = after(mail.SmtpTransport.send)  # type: ignore[method-assign]
    elif step == "maildir-tmp":
        rename = os.rename

        def rename_or_die(source: Any, target: Any) -> None:
            if Path(source).parent.name == "tmp" and Path(target).parent.name == "new":
                die()
            rename(source, target)

        mail.os.rename = rename_or_die  # type: ignore[assignment]
    elif step == "maildir-new":
        fsync_dir = mail._fsync_dir

        def fsync_dir_then_die(path: Any) -> None:
            fsync_dir(path)
            die()

        mail._fsync_dir = fsync_dir_then_die
    else:
        raise SystemExit(f"crashpoint: unknown step {step!r} (one of {', '.join(STEPS)})")


if __name__ == "__main__":
    arm(sys.argv[1])
    sys.exit(cli.main(sys.argv[2:]))
