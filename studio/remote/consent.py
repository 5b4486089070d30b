"""Privacy and cost first: say once per host what leaves this machine, and confirm a paid batch's size."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from studio.errors import UsageError
from studio.io import write_text_atomic
from studio.messages import notice
from studio.remote.provider import Provider


def known_hosts_file() -> Path:
    """Hosts that have received images from this machine: $XDG_STATE_HOME/studio/remote-hosts.txt."""
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "studio" / "remote-hosts.txt"


def announce_first_use(provider: Provider, count: int) -> None:
    """The first time a host receives images: one line saying what is sent where (then never again)."""
    host = provider.target.host
    path = known_hosts_file()
    known = path.read_text(encoding="utf-8").split() if path.is_file() else []
    if host in known:
        return
    notice(
        f"first upload to {host}: {count} job(s) send {provider.sends} to {provider.target.label}; "
        "the results are written here (this line shows once per host)"
    )
    write_text_atomic(path, "\n".join([*known, host]) + "\n")


def confirm_paid(provider: Provider, count: int, yes: bool, ask=None) -> None:
    """A paid provider bills each job: ask before starting, unless --yes; without a terminal, stop in one line."""
    if not provider.target.paid or yes or count == 0:
        return
    what = f"{count} job(s) to {provider.target.label}, which bills each one"
    if ask is None or not sys.stdin.isatty():
        raise UsageError(f"this run sends {what}; add --yes to confirm (no terminal to ask)")
    if not ask(f"Send {what}?"):
        raise UsageError(f"not confirmed: nothing was sent to {provider.target.label}")
