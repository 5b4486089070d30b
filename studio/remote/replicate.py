"""A model hosted on Replicate, through its HTTP predictions API (https://replicate.com/docs/reference/http).

GET /v1/models/OWNER/NAME (or .../versions/VERSION) gives the version to pin and its input schema; each
image goes out as a PNG of its pixels (a data URI under 1 MB, else through POST /v1/files) in POST
/v1/predictions; GET /v1/predictions/ID is polled and POST /v1/predictions/ID/cancel stops it. The result
is downloaded without the token, then studio's own post-processing runs here: resize to the exact scale,
fidelity, colour fix, alpha, metadata, print resolution.
"""

from __future__ import annotations

import base64
import io
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from studio.engines.base import output_size
from studio.errors import EnvironmentProblem, UsageError
from studio.io import Picture, bleed_colors, with_pixels
from studio.ops.colorfix import apply_color_fix
from studio.ops.resize import resize
from studio.remote.http import NO_RECONNECT, Connection, RemoteRefused, ServerGone, download
from studio.remote.output import decode_result
from studio.remote.provider import Flight, Provider, Status
from studio.remote.replicate_inputs import APPLIED_HERE, ModelInputs, input_properties, map_inputs
from studio.remote.target import RemoteTarget
from studio.runner import Job, Plan
from studio.runner.recipe import quality_report
from studio.settings import Settings, command_args, layer_rank, setting_fields
from studio.version import __version__

ENGINE = "replicate"
DATA_URI_LIMIT = 1_000_000
"""Replicate recommends data URIs only for files under 1 MB; larger inputs go through the files API."""
STATES = {
    "starting": "queued",
    "processing": "running",
    "succeeded": "done",
    "failed": "failed",
    "canceled": "cancelled",
}
_PROGRESS = re.compile(r"(\d+)/(\d+) \[")
"""A tqdm progress bar in the prediction's logs: '12/50 [00:03<00:09'."""


class Replicate(Provider):
    in_flight = 4
    poll_floor_s = 0.5
    sends = "each input's pixels as a PNG (no EXIF, GPS or other metadata) and the mapped settings"

    def __init__(self, target: RemoteTarget) -> None:
        self.target = target
        self.owner, _, rest = target.address.partition("/")
        self.name, _, self.version = rest.partition(":")
        self.conn = Connection(target.api_url, target.token, target.label, "--remote-token or REPLICATE_API_TOKEN")
        self.properties: dict[str, Any] = {}
        self.inputs: ModelInputs | None = None

    def connect(self) -> None:
        path = f"/models/{self.owner}/{self.name}"
        try:
            if self.version:
                version = self.conn.json("GET", f"{path}/versions/{self.version}", reconnect=NO_RECONNECT)
            else:
                version = self.conn.json("GET", path, reconnect=NO_RECONNECT).get("latest_version") or {}
        except ServerGone as exc:
            raise EnvironmentProblem(str(exc)) from None
        except RemoteRefused as exc:
            if exc.status == 404:
                raise UsageError(f"--remote {self.target.spec}: Replicate has no such model or version (404)") from None
            raise EnvironmentProblem(f"{self.target.label}: {exc}") from None
        if not version.get("id"):
            raise EnvironmentProblem(f"{self.target.label}: the model has no published version to run")
        self.version = version["id"]
        self.properties = input_properties(version)

    def choose_engine(self, settings: Settings) -> str:
        return ENGINE

    def check(self, plan: Plan) -> None:
        self.inputs = map_inputs(plan.settings, self.properties, self.target.label)

    def submit(self, job: Job, picture: Picture, plan: Plan) -> str:
        assert self.inputs is not None
        body = {"version": self.version, "input": {self.inputs.image: self._upload(picture), **self.inputs.values}}
        return str(self.conn.json("POST", "/predictions", json=body)["id"])

    def _upload(self, picture: Picture) -> str:
        """The picture's pixels as 8-bit PNG: a data URI when small, else a file on Replicate."""
        rgb = picture.rgb if picture.alpha is None else bleed_colors(picture.rgb, picture.alpha)
        buffer = io.BytesIO()
        Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
        data = buffer.getvalue()
        if len(data) < DATA_URI_LIMIT:
            return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        files = {"content": ("input.png", data, "image/png")}
        return str(self.conn.json("POST", "/files", files=files)["urls"]["get"])

    def poll(self, flight: Flight) -> Status:
        body = self.conn.json("GET", f"/predictions/{flight.remote_id}")
        flight.last = body
        step = _PROGRESS.findall(body.get("logs") or "")
        done, total = (int(step[-1][0]), int(step[-1][1])) if step else (0, 0)
        return Status(STATES.get(body.get("status"), "queued"), done, total, body.get("error") and str(body["error"]))

    def finish(self, flight: Flight, plan: Plan) -> tuple[Picture, dict[str, Any]]:
        output = flight.last.get("output")
        url = output[-1] if isinstance(output, list) and output else output
        if not isinstance(url, str):
            raise RemoteRefused(0, f"{self.target.label} returned no image (output: {str(output)[:100]})")
        if url.startswith("data:"):
            data = base64.b64decode(url.partition(",")[2])
        else:
            data = download(url, self.target.label)
        result = decode_result(data, self.target.label)
        return self._post_process(flight, plan, result)

    def _post_process(self, flight: Flight, plan: Plan, result: Picture) -> tuple[Picture, dict[str, Any]]:
        """studio's own steps after the model: exact size, fidelity, colour fix, alpha, provenance."""
        settings, picture = plan.settings, flight.picture
        rgb = picture.rgb
        out_h, out_w = output_size(rgb.shape[0], rgb.shape[1], settings.scale)
        image, notes = result.rgb, []
        if image.shape[:2] != (out_h, out_w):
            notes.append(f"{self.target.label} returned {image.shape[1]}x{image.shape[0]}; Lanczos to {out_w}x{out_h}")
            image = resize(image, out_h, out_w, "lanczos")
        if settings.fidelity:
            baseline = resize(rgb, out_h, out_w, "lanczos")
            image = baseline + (1.0 - settings.fidelity) * (image - baseline)
        color_fix = settings.color_fix or "none"
        if color_fix != "none":
            image = apply_color_fix(color_fix, image, resize(rgb, out_h, out_w, "bicubic"))
        image = np.clip(image, 0.0, 1.0).astype(np.float32)
        alpha = None if picture.alpha is None else resize(picture.alpha, out_h, out_w, "bicubic")
        restored = with_pixels(picture, image, alpha, settings.dpi)
        quality = quality_report(rgb, image)
        return restored, self._provenance(flight, plan, color_fix, notes, quality, restored.size)

    def _provenance(
        self, flight: Flight, plan: Plan, color_fix: str, notes: list[str], quality: dict, size: tuple[int, int]
    ) -> dict[str, Any]:
        assert self.inputs is not None
        settings, picture = plan.settings, flight.picture
        metrics = flight.last.get("metrics") or {}
        used = {*self.inputs.used, *APPLIED_HERE, "scale"}
        return {
            "studio_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "engine": ENGINE,
            "model": f"{self.owner}/{self.name}",
            "weights_sha256": None,
            "engine_details": {
                "provider": "replicate",
                "model": f"{self.owner}/{self.name}",
                "version": self.version,
                "prediction": flight.remote_id,
                "input": self.inputs.values,
                "predict_time": metrics.get("predict_time"),
            },
            "color_fix": color_fix,
            "faces": {"model": f"{self.target.label} face_enhance"} if "faces" in self.inputs.used else None,
            "settings": {k: v for k, v in settings.to_dict().items() if k in used},
            "setting_sources": dict(settings.sources),
            "output_size": list(size),
            "notes": notes,
            "quality": quality,
            "input": {"name": flight.job.source.name, "size": list(picture.size), "bit_depth": picture.bit_depth},
            "command": self.command(flight.job.source, flight.job.output, settings, used),
            "remote": {**self.describe(), "prediction": flight.remote_id},
        }

    def command(self, source: Path, output: Path, settings: Settings, used: set[str]) -> str:
        """The command that runs this model version again with the same inputs and local steps."""
        args = [
            "studio",
            "restore",
            str(source),
            "-o",
            str(output),
            "--remote",
            f"replicate:{self.owner}/{self.name}:{self.version}",
        ]
        defaults = Settings()
        for item in setting_fields():
            name, value = item.name, getattr(settings, item.name)
            if name not in used or name in ("remote", "remote_token", "preset", "variables") or value is None:
                continue
            if value != getattr(defaults, name) or layer_rank(settings.source_of(name)) > 0 or name == "seed":
                args += command_args(item, value)
        return shlex.join(args)

    def cancel(self, flight: Flight) -> None:
        self.conn.request("POST", f"/predictions/{flight.remote_id}/cancel", reconnect=NO_RECONNECT)

    def describe(self) -> dict[str, Any]:
        return {"provider": "replicate", "model": f"{self.owner}/{self.name}", "version": self.version}

    def close(self) -> None:
        self.conn.close()
