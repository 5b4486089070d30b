"""A RunPod serverless endpoint running studio's own worker (`python -m studio.serve.runpod`, built by
deploy/runpod/Dockerfile), through RunPod's documented queue operations
(https://docs.runpod.io/serverless/endpoints/send-requests): GET /health, POST /run, GET /status/ID,
POST /cancel/ID, with `Authorization: Bearer RUNPOD_API_KEY`.

Before the first upload a check job (no image) asks the worker for its verdict on the settings, exactly as
a studio server's /api/v1/check does; a job then carries the file (base64) and the resolved settings, and
returns a PNG with studio's provenance, written here as a studio server's result is.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from studio.errors import EnvironmentProblem, StudioError, UsageError
from studio.io import Picture
from studio.remote.http import NO_RECONNECT, Connection, RemoteRefused, ServerGone
from studio.remote.output import decode_result, studio_result
from studio.remote.provider import FINISHED, Flight, Provider, Status
from studio.remote.studio_server import UPLOAD_TYPES, job_settings
from studio.remote.target import RemoteTarget
from studio.runner import Job, Plan
from studio.settings import Settings

RUN_PAYLOAD_LIMIT = 10 * 1000 * 1000
"""RunPod's /run takes at most 10 MB per request."""
CHECK_TIMEOUT_S = 600.0
"""A check job may wait for a cold worker to start (pulling the image, loading studio)."""
STATES = {"IN_QUEUE": "queued", "IN_PROGRESS": "running", "COMPLETED": "done", "FAILED": "failed",
          "CANCELLED": "cancelled", "TIMED_OUT": "failed"}  # fmt: skip


class RunPod(Provider):
    in_flight = 4
    poll_floor_s = 0.5

    def __init__(self, target: RemoteTarget) -> None:
        self.target = target
        base = f"{target.api_url}/{target.address}"
        self.conn = Connection(base, target.token, target.label, "--remote-token or RUNPOD_API_KEY")
        self.worker: dict[str, Any] = {}
        self._verdicts: dict[str, dict[str, Any]] = {}

    def connect(self) -> None:
        try:
            self.conn.json("GET", "/health", reconnect=NO_RECONNECT)
        except ServerGone as exc:
            raise EnvironmentProblem(str(exc)) from None
        except RemoteRefused as exc:
            if exc.status == 404:
                raise UsageError(f"--remote {self.target.spec}: RunPod has no such endpoint (404)") from None
            raise EnvironmentProblem(f"{self.target.label}: {exc}") from None

    def choose_engine(self, settings: Settings) -> str:
        return self._verdict(job_settings(settings, None))["engine"]

    def check(self, plan: Plan) -> None:
        self.worker = self._verdict(job_settings(plan.settings, plan.engine))

    def _verdict(self, sent: dict[str, Any]) -> dict[str, Any]:
        """The worker's answer to a check job: engine, version, device; or its one-line refusal."""
        key = json.dumps(sent, sort_keys=True)
        if key not in self._verdicts:
            output = self._run_check(sent)
            if not output.get("ok"):
                error = f"{self.target.label}: {output.get('error', 'refused the settings')}"
                raise UsageError(error) if output.get("kind") == "usage" else EnvironmentProblem(error)
            self._verdicts[key] = output
        return self._verdicts[key]

    def _run_check(self, sent: dict[str, Any]) -> dict[str, Any]:
        job_id = self.conn.json("POST", "/run", json={"input": {"check": True, "settings": sent}})["id"]
        deadline, wait = time.monotonic() + CHECK_TIMEOUT_S, self.poll_floor_s
        while time.monotonic() < deadline:
            body = self.conn.json("GET", f"/status/{job_id}")
            state = STATES.get(body.get("status"), "queued")
            if state in FINISHED:
                output = body.get("output")
                if state != "done" or not isinstance(output, dict):
                    raise EnvironmentProblem(
                        f"{self.target.label}: the check job {body.get('status')}: {body.get('error')}"
                    )
                return output
            time.sleep(wait)
            wait = min(2.0, wait * 1.5)
        self.conn.request("POST", f"/cancel/{job_id}", reconnect=NO_RECONNECT)
        raise EnvironmentProblem(f"{self.target.label}: no worker answered the check job in {CHECK_TIMEOUT_S:g} s")

    def upload_problem(self, job: Job) -> str | None:
        if job.source.suffix.lower() not in UPLOAD_TYPES:
            return f"{job.source}: the studio worker takes PNG, JPEG, WebP or TIFF files; convert it first"
        if job.source.is_file() and job.source.stat().st_size * 4 / 3 > RUN_PAYLOAD_LIMIT - 100_000:
            return f"{job.source}: too large for RunPod's 10 MB request limit (base64); use a studio server instead"
        return None

    def submit(self, job: Job, picture: Picture, plan: Plan) -> str:
        image = base64.b64encode(job.source.read_bytes()).decode("ascii")
        payload = {"image": image, "name": job.source.name, "settings": job_settings(plan.settings, plan.engine)}
        return str(self.conn.json("POST", "/run", json={"input": payload})["id"])

    def poll(self, flight: Flight) -> Status:
        body = self.conn.json("GET", f"/status/{flight.remote_id}")
        flight.last = body
        state, output = STATES.get(body.get("status"), "queued"), body.get("output")
        if state == "running" and isinstance(output, str) and output.count("/") == 1:
            done, _, total = output.partition("/")  # the worker's progress_update: "step/steps"
            if done.isdigit() and total.isdigit():
                return Status(state, int(done), int(total))
        if state == "done" and isinstance(output, dict) and output.get("error"):
            return Status("failed", error=str(output["error"]))
        error = body.get("error") or ("timed out on RunPod" if body.get("status") == "TIMED_OUT" else None)
        return Status(state, error=error and str(error))

    def finish(self, flight: Flight, plan: Plan) -> tuple[Picture, dict[str, Any]]:
        output = flight.last.get("output")
        if not isinstance(output, dict) or not isinstance(output.get("image"), str):
            raise StudioError(f"{self.target.label} returned no image for {flight.job.source.name}")
        result = decode_result(base64.b64decode(output["image"]), self.target.label)
        remote = {
            **self.describe(),
            "studio_version": output.get("studio_version"),
            "device": output.get("device"),
            "job": flight.remote_id,
            "label": self.target.label,
        }
        return studio_result(plan, flight.job.source, flight.job.output, flight.picture, result, remote)

    def cancel(self, flight: Flight) -> None:
        self.conn.request("POST", f"/cancel/{flight.remote_id}", reconnect=NO_RECONNECT)

    def describe(self) -> dict[str, Any]:
        return {
            "provider": "runpod",
            "endpoint": self.target.address,
            "studio_version": self.worker.get("version"),
            "device": self.worker.get("device"),
        }

    def close(self) -> None:
        self.conn.close()
