"""A `studio serve` elsewhere, through its documented REST API (README, "Server and browser studio").

Before the first upload: GET /api/v1/server (reachable, token accepted, version, device, limits) and POST
/api/v1/check (the verdict a job with these settings would get: engine, weights, faces). Jobs go to POST
/api/v1/jobs as the original file and the resolved settings, asking for a lossless PNG; the local writer
turns that into the output the user asked for.
"""

from __future__ import annotations

import json
from typing import Any

from studio.engines import engine_class
from studio.engines.base import DIFFUSION_SETTINGS
from studio.errors import EnvironmentProblem, UsageError
from studio.io import Picture
from studio.messages import warn
from studio.remote.http import NO_RECONNECT, Connection, RemoteRefused, ServerGone
from studio.remote.output import LOCAL_SETTINGS, decode_result, studio_result
from studio.remote.provider import Flight, Provider, Status
from studio.remote.target import RemoteTarget
from studio.runner import Job, Plan
from studio.settings import Settings, setting_fields
from studio.version import __version__

SERVER_DECIDES = ("device", "max_pixels", "max_output_pixels")
NOT_SENT = ("remote", "remote_token", "preset", "variables", *SERVER_DECIDES, *LOCAL_SETTINGS)
"""Settings that stay here: where jobs go, the preset (already rendered into the values it set), the
server's own choices, and what the local writer applies."""
UPLOAD_TYPES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
"""What `studio serve` accepts (it reads the type from the content)."""


def job_settings(settings: Settings, engine: str | None) -> dict[str, Any]:
    """The settings a studio on the other side receives. With the engine known, every value it reads is sent,
    so the remote's own config files cannot change the result; before (for `auto`), only what was set."""
    ignored = DIFFUSION_SETTINGS - engine_class(engine).used_settings() if engine else frozenset()
    defaults = Settings()
    sent: dict[str, Any] = {}
    for item in setting_fields():
        name, value = item.name, getattr(settings, item.name)
        if name in NOT_SENT or name in ignored or value is None:
            continue
        if engine is None and value == getattr(defaults, name):
            continue
        sent[name] = value
    if engine:
        sent["engine"] = engine
    sent["format"] = "png"
    return sent


def refusal(label: str, exc: RemoteRefused) -> Exception:
    """A refused check as the local run would say it: bad settings exit 2, what the remote lacks exit 3."""
    if exc.status == 422:
        return UsageError(f"{label}: {exc}")
    return EnvironmentProblem(f"{label}: {exc}")


class StudioServer(Provider):
    def __init__(self, target: RemoteTarget) -> None:
        self.target = target
        self.conn = Connection(target.api_url, target.token, target.label, "--remote-token or STUDIO_REMOTE_TOKEN")
        self.info: dict[str, Any] = {}
        self._verdicts: dict[str, dict[str, Any]] = {}

    def connect(self) -> None:
        try:
            self.info = self.conn.json("GET", "/api/v1/server", reconnect=NO_RECONNECT)
        except ServerGone as exc:
            raise EnvironmentProblem(f"{exc}; is 'studio serve' running there?") from None
        except RemoteRefused as exc:
            if exc.status == 404:
                raise EnvironmentProblem(
                    f"{self.target.label}: no studio server answers there (GET /api/v1/server: 404); "
                    f"it needs studio {__version__} or newer"
                ) from None
            raise refusal(self.target.label, exc) from None
        if self.info.get("version") != __version__:
            warn(
                f"{self.target.label} runs studio {self.info.get('version')}, this machine {__version__}: "
                "the same settings may give other pixels"
            )

    def choose_engine(self, settings: Settings) -> str:
        return self._verdict(job_settings(settings, None))["engine"]

    def check(self, plan: Plan) -> None:
        self._verdict(job_settings(plan.settings, plan.engine))
        lane = "diffusion" if engine_class(plan.engine).diffusion else "cpu"
        workers = int(self.info.get("workers", {}).get(lane, 1))
        room = int(self.info.get("queue_limit", 1)) - int(self.info.get("active_jobs", 0))
        self.in_flight = max(1, min(workers + 1, room))  # one queued behind each busy worker, within the queue

    def _verdict(self, sent: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps(sent, sort_keys=True)
        if key not in self._verdicts:
            try:
                self._verdicts[key] = self.conn.json("POST", "/api/v1/check", data={"settings": key})
            except RemoteRefused as exc:
                raise refusal(self.target.label, exc) from None
        return self._verdicts[key]

    def upload_problem(self, job: Job) -> str | None:
        if job.source.suffix.lower() not in UPLOAD_TYPES:
            return f"{job.source}: a studio server takes PNG, JPEG, WebP or TIFF uploads; convert it first"
        limit = int(self.info.get("max_upload_bytes", 0))
        if limit and job.source.is_file() and job.source.stat().st_size > limit:
            return f"{job.source}: larger than {self.target.label}'s upload limit of {limit / 1e6:g} MB"
        return None

    def submit(self, job: Job, picture: Picture, plan: Plan) -> str:
        settings = json.dumps(job_settings(plan.settings, plan.engine))
        files = {"file": (job.source.name, job.source.read_bytes())}
        return str(self.conn.json("POST", "/api/v1/jobs", files=files, data={"settings": settings})["id"])

    def poll(self, flight: Flight) -> Status:
        body = self.conn.json("GET", f"/api/v1/jobs/{flight.remote_id}")
        return Status(body["status"], int(body.get("step") or 0), int(body.get("steps") or 0), body.get("error"))

    def finish(self, flight: Flight, plan: Plan) -> tuple[Picture, dict[str, Any]]:
        response = self.conn.request("GET", f"/api/v1/jobs/{flight.remote_id}/result")
        if response.status_code != 200:
            raise RemoteRefused(
                response.status_code, f"{self.target.label}: result not available ({response.text[:200]})"
            )
        result = decode_result(response.content, self.target.label)
        remote = {**self.describe(), "job": flight.remote_id, "label": self.target.label}
        return studio_result(plan, flight.job.source, flight.job.output, flight.picture, result, remote)

    def cancel(self, flight: Flight) -> None:
        self.conn.request("DELETE", f"/api/v1/jobs/{flight.remote_id}", reconnect=NO_RECONNECT)

    def describe(self) -> dict[str, Any]:
        return {
            "provider": "studio",
            "server": self.target.address,
            "studio_version": self.info.get("version"),
            "device": self.info.get("device"),
        }

    def close(self) -> None:
        self.conn.close()
