"""HTTP to a remote: one httpx client per target, waiting out rate limits (429 with Retry-After) and short
drops of the connection, and one-line errors for what waiting cannot fix.

The token travels only in the Authorization header of requests to the target's own API, never to other
hosts (result downloads) and never into a message.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any

import httpx

from studio.errors import StudioError, UsageError
from studio.version import __version__

RATE_LIMIT_TRIES = 30
MAX_WAIT_S = 120.0
RECONNECT_WAITS_S = (0.5, 1.0, 2.0, 4.0)
"""Waits before each new try after a dropped connection: about 7 s, enough for a server that restarts."""
NO_RECONNECT: tuple[float, ...] = ()
TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class ServerGone(StudioError):
    """The remote stopped answering (refused or dropped connections, past the reconnect waits)."""


class RemoteRefused(StudioError):
    """The remote answered a request with an error: `status` and its one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TokenRefused(UsageError):
    """401/403: the token is missing or wrong."""


class Connection:
    """Requests to one remote API. `label` names it in messages; `token_hint` says where a token is set."""

    def __init__(self, base_url: str, token: str | None, label: str, token_hint: str) -> None:
        headers = {"User-Agent": f"studio/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.label, self.token_hint = label, token_hint
        self.client = httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT)

    def request(
        self, method: str, path: str, reconnect: tuple[float, ...] = RECONNECT_WAITS_S, **kwargs: Any
    ) -> httpx.Response:
        """One request, tried again after a 429 (as long as the remote asks) or a dropped connection."""
        waits = iter(reconnect)
        limited = 0
        while True:
            try:
                response = self.client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                wait = next(waits, None)
                if wait is None:
                    raise ServerGone(f"{self.label} stopped answering ({_reason(exc)})") from None
                time.sleep(wait)
                continue
            if response.status_code == 429 and limited < RATE_LIMIT_TRIES:
                limited += 1
                time.sleep(retry_after(response, limited))
                continue
            if response.status_code in (401, 403):
                raise TokenRefused(
                    f"{self.label} refused the token (HTTP {response.status_code}: {detail(response)}); "
                    f"check {self.token_hint}"
                )
            return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request whose success is a JSON body; any other answer is a RemoteRefused with the remote's reason."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RemoteRefused(response.status_code, detail(response))
        try:
            return response.json()
        except ValueError:
            raise RemoteRefused(response.status_code, f"{self.label} answered with something other than JSON") from None

    def close(self) -> None:
        self.client.close()


def download(url: str, label: str) -> bytes:
    """A result from a host other than the API (Replicate's file delivery): no token goes with it."""
    try:
        response = httpx.get(url, timeout=TIMEOUT, follow_redirects=True)
    except httpx.TransportError as exc:
        raise RemoteRefused(0, f"{label}: the result could not be downloaded ({_reason(exc)})") from None
    if response.status_code >= 400:
        raise RemoteRefused(
            response.status_code, f"{label}: the result could not be downloaded (HTTP {response.status_code})"
        )
    return response.content


def retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait after a 429: the Retry-After header (seconds or a date), else Replicate's "resets in
    ~30s" body, else doubling from one second."""
    header = response.headers.get("Retry-After", "").strip()
    wait: float | None = None
    if header.replace(".", "", 1).isdigit():
        wait = float(header)
    elif header:
        when = email.utils.parsedate_to_datetime(header) if _is_date(header) else None
        wait = when.timestamp() - time.time() if when else None
    if wait is None and (found := re.search(r"~?(\d+)\s*s\b", detail(response))):
        wait = float(found.group(1))
    if wait is None:
        wait = 2.0 ** (attempt - 1)
    return min(max(wait, 0.0), MAX_WAIT_S)


def _is_date(text: str) -> bool:
    try:
        email.utils.parsedate_to_datetime(text)
        return True
    except (TypeError, ValueError):
        return False


def detail(response: httpx.Response) -> str:
    """The remote's one-line reason: studio's and Replicate's `detail`, RunPod's `error`, else the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "error", "message", "title"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key].strip().splitlines()[0]
    text = response.text.strip().splitlines()
    return text[0][:200] if text else f"HTTP {response.status_code}"


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
