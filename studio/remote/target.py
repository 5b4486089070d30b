"""Where `--remote` sends jobs: a `studio serve` URL, a Replicate model or a RunPod endpoint, and its token.

The token comes from `--remote-token` (flag or any config layer), else the provider's environment variable;
it is kept out of every repr, report, provenance and message.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from studio.errors import UsageError
from studio.settings import Settings

TOKEN_VARIABLES = {"studio": "STUDIO_REMOTE_TOKEN", "replicate": "REPLICATE_API_TOKEN", "runpod": "RUNPOD_API_KEY"}
API_URLS = {"replicate": "https://api.replicate.com/v1", "runpod": "https://api.runpod.ai/v2"}
API_URL_VARIABLES = {"replicate": "STUDIO_REPLICATE_API_URL", "runpod": "STUDIO_RUNPOD_API_URL"}
"""The providers' API roots; the variables point them elsewhere (a proxy, or the tests' local servers)."""
PROVIDER_NAMES = {"studio": "studio server", "replicate": "Replicate", "runpod": "RunPod"}

_REPLICATE = re.compile(r"^(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)(?::(?P<version>[0-9a-f]{8,64}))?$")
_RUNPOD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")
_EXPECTED = "expected a studio serve URL (http://gpu-box:8765), replicate:OWNER/MODEL[:VERSION] or runpod:ENDPOINT_ID"
LOCAL_PATH_SETTINGS = ("model", "ensemble", "adapter", "face_model", "caption_model")
"""Settings that may name a file: a file on this machine means nothing to the machine that runs the job."""


@dataclass(frozen=True)
class RemoteTarget:
    kind: str  # studio | replicate | runpod
    address: str  # the server's URL, OWNER/MODEL[:VERSION], or the endpoint id
    token: str | None = field(default=None, repr=False)

    @property
    def paid(self) -> bool:
        """Replicate and RunPod bill each job: the batch's size is confirmed before it starts."""
        return self.kind != "studio"

    @property
    def api_url(self) -> str:
        if self.kind == "studio":
            return self.address
        return os.environ.get(API_URL_VARIABLES[self.kind], API_URLS[self.kind]).rstrip("/")

    @property
    def host(self) -> str:
        """The machine that receives the images (for the privacy line)."""
        return urlsplit(self.api_url).netloc

    @property
    def spec(self) -> str:
        """As `--remote` names it."""
        return self.address if self.kind == "studio" else f"{self.kind}:{self.address}"

    @property
    def label(self) -> str:
        return f"{PROVIDER_NAMES[self.kind]} {self.spec if self.kind == 'studio' else self.address}"


def parse_target(settings: Settings) -> RemoteTarget | None:
    """The resolved `--remote`, checked, with its token; None for a local run."""
    text = settings.remote
    if not text:
        return None
    kind, _, rest = text.partition(":")
    if kind in ("replicate", "runpod"):
        if not (_REPLICATE if kind == "replicate" else _RUNPOD).match(rest):
            raise UsageError(f"--remote {text}: {_EXPECTED}")
        address = rest
    else:
        address = _server_url(text)
        kind = "studio"
    token = settings.remote_token or os.environ.get(TOKEN_VARIABLES[kind]) or None
    target = RemoteTarget(kind, address, token)
    if target.paid and not token:
        raise UsageError(
            f"--remote {text}: {PROVIDER_NAMES[kind]} needs a token: set {TOKEN_VARIABLES[kind]} or --remote-token"
        )
    _check_settings(settings, target)
    return target


def _server_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--remote {text}: {_EXPECTED}")
    if parts.username or parts.password:
        raise UsageError(
            f"--remote {parts.hostname}: put the token in --remote-token or STUDIO_REMOTE_TOKEN, not the URL"
        )
    if parts.query or parts.fragment:
        raise UsageError(f"--remote {text}: give the server's address only, e.g. http://gpu-box:8765")
    return text.rstrip("/")


def _check_settings(settings: Settings, target: RemoteTarget) -> None:
    """What cannot go to another machine: the device is the server's choice, and a local file is not there."""
    if settings.source_of("device") == "cli":  # a config file's device is for local runs: not sent
        raise UsageError(f"--device {settings.device}: with --remote the machine that runs the job picks its device")
    for name in LOCAL_PATH_SETTINGS:
        values = getattr(settings, name)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str) and os.path.exists(value):
                flag = "--" + ("model" if name == "ensemble" else name.replace("_", "-"))
                raise UsageError(
                    f"{flag} {value}: a file on this machine cannot be used by {target.label}; "
                    "name weights installed there instead"
                )


def plain_http_to_network(target: RemoteTarget) -> bool:
    """A token sent over plain HTTP beyond this machine can be read on the way."""
    parts = urlsplit(target.api_url)
    if parts.scheme != "http" or not target.token:
        return False
    host = parts.hostname or ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"
