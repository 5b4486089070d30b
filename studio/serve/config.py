"""What one `studio serve` instance is allowed to do: where it keeps jobs, limits, auth."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from studio.errors import UsageError
from studio.settings import DEFAULT_MAX_PIXELS

DEFAULT_MAX_OUTPUT_PIXELS = 7680 * 4320
"""8K UHD: the largest output the server writes by default (a 480x480 upload at scale 16 is 59 MP)."""
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServeConfig:
    data_dir: Path
    token: str | None = None
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    queue_limit: int = 100  # queued + running jobs; beyond it: 429 with Retry-After
    cpu_workers: int = 1  # classical / fast jobs run beside the diffusion worker(s)
    keep_seconds: float = 24 * 3600.0  # finished jobs (and their files) are deleted after this
    start_workers: bool = True  # tests queue jobs with the workers off to see them persist
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS  # input pixels x scale^2: refused up front beyond it
    weights_dirs: tuple[Path, ...] = ()  # the operator's folders whose files clients may name (by file name)
    preset_dirs: tuple[Path, ...] = ()  # the operator's extra preset folders
    host: str = "127.0.0.1"  # the address bound: on loopback, only loopback Host headers are answered
    allowed_hosts: tuple[str, ...] = ()  # further Host names clients use (a reverse proxy's public name)

    @property
    def database(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def tokens_file(self) -> Path:
        return self.data_dir / "tokens.json"


def default_data_dir() -> Path:
    """$XDG_DATA_HOME/studio/serve (~/.local/share/studio/serve)."""
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "studio" / "serve"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_token(token: str | None) -> None:
    """An empty or blank token would match an empty `Authorization: Bearer` header: refuse it."""
    if token is not None and (not token.strip() or token != token.strip()):
        raise UsageError(
            "--token: empty, blank or padded with spaces; use a long random one "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))') or `studio serve token add NAME`"
        )


def check_bind(host: str, token: str | None, named_tokens: int = 0) -> None:
    """Anyone who can reach a non-loopback address could run jobs and read results: require a token."""
    check_token(token)
    if not is_loopback(host) and not token and not named_tokens:
        raise UsageError(
            f"--host {host}: binding beyond this machine needs --token (or STUDIO_SERVE_TOKEN) or a named token "
            "(studio serve token add NAME); clients then send 'Authorization: Bearer TOKEN'"
        )
