"""Local stand-ins for Replicate and RunPod on 127.0.0.1, following each provider's documented HTTP contract.

Neither service can be reached from the build machines, so the clients are tested against these. Shapes
follow the providers' documentation:

Replicate (https://replicate.com/docs/reference/http, https://replicate.com/docs/topics/predictions,
https://replicate.com/docs/topics/predictions/rate-limits, https://replicate.com/docs/topics/predictions/input-files):
GET /v1/models/{owner}/{name} (latest_version.id, latest_version.openapi_schema.components.schemas.Input),
GET /v1/models/{owner}/{name}/versions/{id}, POST /v1/predictions {"version", "input"} -> a prediction
{"id", "model", "version", "input", "logs", "output", "error", "status": starting|processing|succeeded|failed|
canceled, "metrics": {"predict_time"}, "urls": {"get", "cancel"}}, GET /v1/predictions/{id},
POST /v1/predictions/{id}/cancel, POST /v1/files (multipart "content") -> {"urls": {"get"}};
`Authorization: Bearer TOKEN`; 429 {"detail": "Request was throttled. Your rate limit resets in ~Ns."};
file inputs as URLs or data URIs; outputs are URLs on a delivery host that needs no token.

RunPod (https://docs.runpod.io/serverless/endpoints/send-requests,
https://docs.runpod.io/serverless/endpoints/operation-reference, https://docs.runpod.io/sdks/python/endpoints):
POST /v2/{endpoint}/run {"input": {...}} -> {"id", "status": "IN_QUEUE"}, GET /v2/{endpoint}/status/{id} ->
{"id", "status": IN_QUEUE|IN_PROGRESS|COMPLETED|FAILED|CANCELLED|TIMED_OUT, "delayTime", "executionTime",
"output", "error"}, POST /v2/{endpoint}/cancel/{id}, GET /v2/{endpoint}/health -> {"jobs": {...}, "workers":
{...}}; `Authorization: Bearer RUNPOD_API_KEY`; 429 past the rate limits; /run bodies up to 10 MB. A handler
that returns {"error": ...} fails the job (the worker SDK's rule); progress updates show as the job's output
while it is IN_PROGRESS. The RunPod stand-in runs studio's real worker handler (studio.serve.runpod).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

TOKEN = "r8_test_token"


@dataclass
class Behaviour:
    """How a stand-in misbehaves: rate limits, slow or failing jobs."""

    throttle_first: int = 0  # the first N job submissions get 429
    retry_after: str | None = "1"  # the 429's Retry-After header (None: none, only the body's hint)
    delay_s: float = 0.0  # a job stays queued this long
    fail_with: str | None = None  # every job fails with this error
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (method, path, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class FakeService:
    """A stand-in on 127.0.0.1: `url`, `behaviour`, and the jobs it saw; a context manager."""

    def __init__(self, route: Callable[[Any, str, str, bytes], tuple[int, dict[str, str], bytes]]) -> None:
        self.behaviour = Behaviour()
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                service.behaviour.calls.append((method, self.path, dict(self.headers)))
                status, headers, payload = route(service, method, self.path, body, dict(self.headers))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeService:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def submissions(self, path_part: str) -> int:
        return sum(1 for method, path, _ in self.behaviour.calls if method == "POST" and path.endswith(path_part))


def _json(status: int, value: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(value).encode()


def _authorised(headers: dict[str, str]) -> bool:
    return headers.get("Authorization") == f"Bearer {TOKEN}"


def _throttled(service: FakeService) -> tuple[int, dict[str, str], bytes] | None:
    behaviour = service.behaviour
    if behaviour.throttle_first <= 0:
        return None
    behaviour.throttle_first -= 1
    headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
    return _json(429, {"detail": "Request was throttled. Your rate limit resets in ~1s."}, headers)


# --- Replicate ---------------------------------------------------------------------------------------------

VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
UPSCALER_INPUTS = {
    "image": {"type": "string", "format": "uri", "title": "Image"},
    "scale": {"type": "number", "default": 4, "minimum": 0, "maximum": 10, "title": "Scale"},
    "face_enhance": {"type": "boolean", "default": False, "title": "Face Enhance"},
}
MODELS = {"acme/upscaler": UPSCALER_INPUTS, "acme/diffusion-upscaler": {
    "image": {"type": "string", "format": "uri"},
    "prompt": {"type": "string", "default": ""},
    "seed": {"type": "integer"},
    "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 100},
}}  # fmt: skip


def replicate_model(image: Image.Image, inputs: dict[str, Any]) -> Image.Image:
    """What the stand-in model does: a Lanczos enlargement by `scale` (4 by default)."""
    scale = float(inputs.get("scale", 4))
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def _version(name: str) -> dict[str, Any]:
    schema = {"components": {"schemas": {"Input": {"type": "object", "properties": MODELS[name]}}}}
    return {"id": VERSION, "created_at": "2024-01-01T00:00:00Z", "cog_version": "0.9.0", "openapi_schema": schema}


def _replicate_route(service: FakeService, method: str, path: str, body: bytes, headers: dict[str, str]):
    if path.startswith("/delivery/"):  # the file host: no token needed (and none must be sent)
        return 200, {"Content-Type": "image/png"}, service.files[path]
    if not _authorised(headers):
        return _json(401, {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token"})
    parts = path.strip("/").split("/")
    if parts[:2] == ["v1", "models"] and method == "GET":
        name = "/".join(parts[2:4])
        if name not in MODELS or (len(parts) == 6 and parts[5] != VERSION):
            return _json(404, {"detail": "Not found."})
        version = _version(name)
        return _json(
            200, version if len(parts) == 6 else {"owner": parts[2], "name": parts[3], "latest_version": version}
        )
    if path == "/v1/files" and method == "POST":
        file_id = uuid.uuid4().hex
        service.files[f"/delivery/{file_id}"] = _multipart_content(body, headers)
        return _json(201, {"id": file_id, "urls": {"get": f"{service.url}/delivery/{file_id}"}})
    if path == "/v1/predictions" and method == "POST":
        return _throttled(service) or _create_prediction(service, json.loads(body))
    if parts[:2] == ["v1", "predictions"] and len(parts) >= 3:
        prediction = service.jobs.get(parts[2])
        if prediction is None:
            return _json(404, {"detail": "Not found."})
        if len(parts) == 4 and parts[3] == "cancel" and method == "POST":
            if prediction["status"] in ("starting", "processing"):
                prediction["status"] = "canceled"
            return _json(200, prediction)
        _advance_prediction(service, prediction)
        return _json(200, prediction)
    return _json(404, {"detail": "Not found."})


def _create_prediction(service: FakeService, request: dict[str, Any]):
    if request.get("version") != VERSION:
        return _json(422, {"title": "Invalid version", "detail": "Invalid version or not permitted", "status": 422})
    prediction_id = uuid.uuid4().hex[:26]
    prediction = {
        "id": prediction_id,
        "model": "acme/upscaler",
        "version": VERSION,
        "input": request.get("input", {}),
        "logs": "",
        "output": None,
        "error": None,
        "status": "starting",
        "created_at": time.time(),
        "urls": {
            "get": f"{service.url}/v1/predictions/{prediction_id}",
            "cancel": f"{service.url}/v1/predictions/{prediction_id}/cancel",
        },
    }
    service.jobs[prediction_id] = prediction
    return _json(201, prediction)


def _advance_prediction(service: FakeService, prediction: dict[str, Any]) -> None:
    """Starting, then processing, then done once the job's delay has passed."""
    if prediction["status"] not in ("starting", "processing"):
        return
    waited = time.time() - prediction["created_at"]
    if waited < service.behaviour.delay_s:
        prediction["status"] = "processing"
        prediction["logs"] = f"{int(10 * waited / service.behaviour.delay_s)}/10 [00:01<00:01]"
        return
    if service.behaviour.fail_with:
        prediction.update(status="failed", error=service.behaviour.fail_with)
        return
    source = _read_input(service, prediction["input"]["image"])
    buffer = io.BytesIO()
    replicate_model(source, prediction["input"]).save(buffer, format="PNG")
    path = f"/delivery/{prediction['id']}/out.png"
    service.files[path] = buffer.getvalue()
    prediction.update(status="succeeded", output=f"{service.url}{path}", metrics={"predict_time": 0.01})


def _read_input(service: FakeService, uri: str) -> Image.Image:
    if uri.startswith("data:"):
        data = base64.b64decode(uri.partition(",")[2])
    else:
        data = service.files[uri.removeprefix(service.url)]
    return Image.open(io.BytesIO(data)).convert("RGB")


def _multipart_content(body: bytes, headers: dict[str, str]) -> bytes:
    """The 'content' part of a multipart upload."""
    boundary = headers["Content-Type"].split("boundary=")[1].encode()
    for part in body.split(b"--" + boundary):
        if b'name="content"' in part:
            return part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
    raise ValueError("no content part")


def fake_replicate() -> FakeService:
    service = FakeService(_replicate_route)
    service.jobs, service.files = {}, {}
    return service


# --- RunPod ------------------------------------------------------------------------------------------------

ENDPOINT = "abc123xyz"


def _runpod_route(service: FakeService, method: str, path: str, body: bytes, headers: dict[str, str]):
    if not _authorised(headers):
        return 401, {"Content-Type": "text/plain"}, b"401 Unauthorized"
    parts = path.strip("/").split("/")
    if parts[:2] != ["v2", ENDPOINT] or len(parts) < 3:
        return _json(404, {"error": "endpoint not found"})
    operation = parts[2]
    if operation == "health" and method == "GET":
        counts = {"completed": 0, "failed": 0, "inProgress": 0, "inQueue": 0, "retried": 0}
        return _json(200, {"jobs": counts, "workers": {"idle": 1, "running": 0}})
    if operation == "run" and method == "POST":
        if len(body) > 10 * 1000 * 1000:
            return _json(400, {"error": "request body exceeds 10 MB"})
        return _throttled(service) or _start_runpod_job(service, json.loads(body))
    job = service.jobs.get(parts[3]) if len(parts) > 3 else None
    if job is None:
        return _json(404, {"error": "job not found"})
    if operation == "cancel" and method == "POST":
        if job["status"] in ("IN_QUEUE", "IN_PROGRESS"):
            job["status"] = "CANCELLED"
        return _json(200, {"id": job["id"], "status": job["status"]})
    if operation == "status":
        return _json(200, {k: v for k, v in job.items() if not k.startswith("_")})
    return _json(404, {"error": "unknown operation"})


def _start_runpod_job(service: FakeService, request: dict[str, Any]):
    from studio.serve.runpod import handler

    job = {"id": f"{uuid.uuid4()}-u1", "status": "IN_QUEUE", "_submitted": time.time()}
    service.jobs[job["id"]] = job
    active = sum(1 for other in service.jobs.values() if other["status"] in ("IN_QUEUE", "IN_PROGRESS"))
    service.peak = max(service.peak, active)  # jobs the client kept in flight at once

    def work() -> None:
        time.sleep(service.behaviour.delay_s)
        if job["status"] == "CANCELLED":
            return
        job.update(status="IN_PROGRESS", delayTime=int(1000 * (time.time() - job["_submitted"])))

        def progress(done: int, total: int) -> None:
            if job["status"] == "IN_PROGRESS":
                job["output"] = f"{done}/{total}"

        started = time.time()
        output = handler({"id": job["id"], "input": request.get("input", {})}, progress)
        if job["status"] == "CANCELLED":
            return  # RunPod drops a cancelled job's result
        job["executionTime"] = int(1000 * (time.time() - started))
        if service.behaviour.fail_with:
            job.update(status="FAILED", error=service.behaviour.fail_with)
        elif isinstance(output, dict) and "error" in output:
            job.pop("output", None)
            job.update(status="FAILED", error=output["error"])
        else:
            job.update(status="COMPLETED", output=output)

    threading.Thread(target=work, daemon=True).start()
    return _json(200, {"id": job["id"], "status": "IN_QUEUE"})


def fake_runpod() -> FakeService:
    service = FakeService(_runpod_route)
    service.jobs, service.peak = {}, 0
    return service
