"""Named access tokens: who may use the server, and whose jobs each client sees.

Tokens live in DATA/tokens.json (mode 0600) as SHA-256 hashes only: a token is 32 random bytes, so a
plain hash is enough to make the file useless to a reader. A client token sees only the jobs it
submitted; an operator token (`--operator`, or `studio serve --token`) sees every job. The server
re-reads the file when it changes, so `studio serve token revoke` takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from studio.errors import ConfigError, UsageError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
OPERATOR = "operator"
"""The name of the `studio serve --token` token."""


@dataclass(frozen=True)
class Client:
    """Who sent a request: a token's name and whether it sees every job."""

    name: str | None
    operator: bool


ANYONE = Client(None, operator=True)
"""No tokens configured (a loopback-only server): every request sees every job."""


@dataclass(frozen=True)
class TokenEntry:
    name: str
    sha256: str
    operator: bool
    created: float


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFile:
    """DATA/tokens.json, read again whenever it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._entries: list[TokenEntry] = []

    def entries(self) -> list[TokenEntry]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._entries, self._stamp = _read(self.path), stamp
        return self._entries

    def add(self, name: str, operator: bool = False) -> str:
        """A new random token called `name`; returns it (the only time it is shown)."""
        if not NAME.match(name):
            raise UsageError(f"token name {name!r}: use letters, digits, '.', '_' or '-' (up to 64)")
        entries = self.entries()
        if any(entry.name == name for entry in entries) or name == OPERATOR:
            raise UsageError(f"token name {name!r} is taken; revoke it first or pick another name")
        token = secrets.token_urlsafe(32)
        self._write([*entries, TokenEntry(name, digest(token), operator, time.time())])
        return token

    def revoke(self, name: str) -> None:
        entries = self.entries()
        if not any(entry.name == name for entry in entries):
            known = ", ".join(entry.name for entry in entries) or "none"
            raise UsageError(f"no token named {name!r} (tokens: {known})")
        self._write([entry for entry in entries if entry.name != name])

    def _write(self, entries: list[TokenEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = self.path.with_suffix(".part")
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump({"tokens": [asdict(entry) for entry in entries]}, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.path)


def _read(path: Path) -> list[TokenEntry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [TokenEntry(**entry) for entry in data["tokens"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a studio token file ({exc}); move it aside and add the tokens again") from None


def identify(given: str, operator_digest: str | None, entries: list[TokenEntry]) -> Client | None:
    """The client whose token is `given`, or None. Every hash is compared in constant time."""
    if not given:
        return None
    wanted = digest(given)
    found: Client | None = None
    if operator_digest is not None and secrets.compare_digest(wanted, operator_digest):
        found = Client(OPERATOR, operator=True)
    for entry in entries:
        if secrets.compare_digest(wanted, entry.sha256):
            found = Client(entry.name, entry.operator)
    return found
