"""The `studio serve` app in-process (FastAPI's TestClient) for the tests of tests/serve."""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from studio.serve.app import create_app
from studio.serve.config import ServeConfig

CLASSICAL = json.dumps({"engine": "classical", "scale": 2})
BASE_URL = "http://127.0.0.1:8765"
TOKEN = "s3cret-token-4711"
"""The token of the live servers the remote tests start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


"""How a browser or script on this machine reaches the server (a loopback Host, as the server checks)."""


def png(astronaut: np.ndarray, size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(astronaut).resize(size, Image.Resampling.LANCZOS).save(buffer, "PNG")
    return buffer.getvalue()


def client(data_dir: Path, **options: Any) -> TestClient:
    return TestClient(create_app(ServeConfig(data_dir=data_dir, **options)), base_url=BASE_URL)


def post(
    app: TestClient, content: bytes, name: str = "photo.png", settings: str | None = CLASSICAL, **headers: str
) -> Any:
    data = {"settings": settings} if settings is not None else {}
    return app.post("/api/v1/jobs", files={"file": (name, content, "image/png")}, data=data, headers=headers)


def wait(app: TestClient, job_id: str, timeout: float = 30, **headers: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = app.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def left_behind(data_dir: Path) -> list[Path]:
    return list((data_dir / "jobs").iterdir())
