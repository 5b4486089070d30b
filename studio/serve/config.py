"""What one `studio serve` instance is allowed to do: where it keeps jobs, limits, auth."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from studio.errors import UsageError
from studio.settings import DEFAULT_MAX_PIXELS


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

    @property
    def database(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"


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


def check_bind(host: str, token: str | None) -> None:
    """Anyone who can reach a non-loopback address could run jobs and read results: require a token."""
    if not is_loopback(host) and not token:
        raise UsageError(
            f"--host {host}: binding beyond this machine needs --token (or STUDIO_SERVE_TOKEN); "
            "clients then send 'Authorization: Bearer TOKEN'"
        )
