"""Who may talk to the server and what browsers may do with its answers.

- Tokens: `Authorization: Bearer TOKEN` on every API call once any token exists (see tokens.py).
- Host: a server bound to loopback answers only Host names of this machine (plus --allowed-host), so a
  web page cannot reach it through a DNS name rebound to 127.0.0.1.
- Origin: a request a browser sends from another site (its Origin or Sec-Fetch-Site says so) is refused,
  so a page the user visits cannot post jobs to a server without a token.
- Headers: a Content-Security-Policy allowing only the page's own script, no framing, no sniffing.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Header, HTTPException, Request
from fastapi.responses import JSONResponse

from studio.serve.config import LOOPBACK_NAMES, ServeConfig, is_loopback
from studio.serve.tokens import ANYONE, Client, TokenFile, digest, identify


def token_checker(config: ServeConfig, tokens: TokenFile) -> Any:
    """A dependency that names the client; 401 in one line when a token is needed and missing or wrong."""
    operator_digest = digest(config.token) if config.token is not None else None

    def check(request: Request, authorization: Annotated[str | None, Header()] = None) -> Client:
        entries = tokens.entries()
        if operator_digest is None and not entries:
            client = ANYONE
        else:
            scheme, _, given = (authorization or "").partition(" ")
            found = identify(given.strip(), operator_digest, entries) if scheme.lower() == "bearer" else None
            if found is None:
                raise HTTPException(
                    401,
                    "missing or wrong token: send 'Authorization: Bearer TOKEN'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            client = found
        request.state.client = client
        return client

    return check


def host_name(header: str) -> str:
    """The name part of a Host header: 'localhost:8765' -> 'localhost', '[::1]:80' -> '::1'."""
    return (urlsplit(f"//{header}").hostname or "").lower()


def request_refusal(config: ServeConfig, request: Request) -> str | None:
    """Why this request must not be answered (wrong Host, another site's page), or None."""
    host = request.headers.get("host", "")
    allowed = {name.lower() for name in config.allowed_hosts}
    if is_loopback(config.host):
        allowed |= set(LOOPBACK_NAMES)
    elif allowed:
        allowed.add(config.host.lower())
    if allowed and host_name(host) not in allowed:
        return f"Host {host!r} is not this server's name (add it with studio serve --allowed-host)"
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
        return f"cross-origin request from {origin!r} refused"
    if request.headers.get("sec-fetch-site") == "cross-site":
        return "cross-site request refused"
    return None


def security_headers(script: str) -> dict[str, str]:
    """Headers for every response; the policy allows the page's one inline script by its hash."""
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = (
        f"default-src 'none'; script-src 'sha256-{script_hash}'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' blob: data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


def inline_script(page: str) -> str:
    """The text of the page's <script> element (what the policy's hash covers)."""
    found = re.search(r"<script>(.*?)</script>", page, re.DOTALL)
    return found.group(1) if found else ""


def guard(config: ServeConfig, headers: dict[str, str]) -> Any:
    """The middleware: refuse what `request_refusal` refuses (403, one line), add `headers` to the rest."""

    async def middleware(request: Request, call_next: Any) -> Any:
        refusal = request_refusal(config, request)
        response = JSONResponse({"detail": refusal}, status_code=403) if refusal else await call_next(request)
        response.headers.update(headers)
        return response

    return middleware
