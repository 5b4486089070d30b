"""The queue under load and while running (issue 22, items 3 and 6): the limit holds for concurrent
uploads, tiles are reported as steps, and a cancel stops a native tile at once."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from support.serving import client, left_behind, png, post, wait  # noqa: E402

import studio.serve.app  # noqa: E402
from studio.native import interrupt_check, run_interruptible  # noqa: E402
from studio.ops.tiling import tiled_apply  # noqa: E402

UPLOADS = 30
LIMIT = 5


def test_concurrent_uploads_never_overshoot_the_queue_limit(
    tmp_path: Path, astronaut, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 uploads at once against --queue-limit 5: exactly 5 queued, the rest 429 with nothing left behind.
    failed before: the limit was read before the upload and the job inserted after it (200 uploads
    against a limit of 20 admitted 29)."""
    checked = studio.serve.app.check_decodes

    def slow_check(*args, **kwargs):  # a real decode, a little slower: uploads overlap as on a busy server
        time.sleep(0.05)
        return checked(*args, **kwargs)

    monkeypatch.setattr(studio.serve.app, "check_decodes", slow_check)
    content = png(astronaut)
    start = threading.Barrier(UPLOADS)
    data_dir = tmp_path / "data"
    with client(data_dir, start_workers=False, queue_limit=LIMIT) as app:

        def upload(_: int) -> int:
            start.wait()
            return post(app, content).status_code

        with ThreadPoolExecutor(UPLOADS) as pool:
            statuses = list(pool.map(upload, range(UPLOADS)))
        assert sorted(statuses) == [202] * LIMIT + [429] * (UPLOADS - LIMIT)
        assert len(app.get("/api/v1/jobs").json()) == LIMIT
    assert len(left_behind(data_dir)) == LIMIT


def test_tiles_are_reported_as_steps_from_the_start() -> None:
    """A tiled pass says how many tiles before the first one ends, so a job shows 0/N, then 1/N...
    failed before: the first report came after the first tile (a one-tile fast job showed 0/0 throughout)."""
    calls: list[tuple[int, int]] = []
    image = np.zeros((1, 3, 40, 40), np.float32)
    tiled_apply(lambda tile: tile.repeat(2, axis=2).repeat(2, axis=3), image, 2, 24, 4, lambda *a: calls.append(a))
    assert calls[0] == (0, 4) and calls[-1] == (4, 4) and len(calls) == 5
    calls.clear()
    tiled_apply(lambda tile: tile.repeat(2, axis=2).repeat(2, axis=3), image, 2, 0, 4, lambda *a: calls.append(a))
    assert calls == [(0, 1), (1, 1)]


class Cancelled(Exception):
    pass


def test_a_cancel_stops_a_long_native_call_at_once() -> None:
    """A server worker's check runs while a native call (one ncnn tile) is in flight: it stops in ~0.1 s.
    failed before: the job noticed the cancel only after the tile (~30 s on CPU)."""
    cancel = threading.Event()

    def check() -> None:
        if cancel.is_set():
            raise Cancelled

    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with interrupt_check(check), pytest.raises(Cancelled):
        run_interruptible(time.sleep, 10)  # stands in for a tile that releases the GIL
    assert time.monotonic() - started < 2


@pytest.mark.slow
def test_cancelling_a_running_fast_job_is_prompt_and_it_reports_its_tiles(tmp_path: Path, astronaut) -> None:
    """The real fast engine (bundled Real-ESRGAN, ncnn on CPU) on one large tile: the job shows 0/1 while
    it runs and a cancel ends it within seconds, not after the tile.
    failed before: 0/0 for the whole run, and the cancel waited for the tile to end."""
    with client(tmp_path / "data") as app:
        settings = json.dumps({"engine": "fast", "scale": 4, "tile": 256})
        job_id = post(app, png(astronaut, (256, 256)), settings=settings).json()["id"]
        deadline = time.monotonic() + 60
        while (job := app.get(f"/api/v1/jobs/{job_id}").json())["steps"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert job["status"] == "running" and (job["step"], job["steps"]) == (0, 1)
        time.sleep(1.0)  # well inside the tile
        asked = time.monotonic()
        assert app.delete(f"/api/v1/jobs/{job_id}").status_code == 200
        assert wait(app, job_id)["status"] == "cancelled"
        assert time.monotonic() - asked < 3
