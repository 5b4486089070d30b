"""The REST service in-process (FastAPI's TestClient): limits, hostile uploads, auth, persistence, cancel.

Jobs use the classical engine on tiny real photos, so every test restores for real in well under a second.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from studio.cli import app as cli_app

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from support.serving import client as _client  # noqa: E402
from support.serving import left_behind as _left_behind  # noqa: E402
from support.serving import png as _png  # noqa: E402
from support.serving import post as _post  # noqa: E402
from support.serving import wait as _wait  # noqa: E402

from studio.serve.config import ServeConfig  # noqa: E402
from studio.serve.store import JobStore  # noqa: E402
from studio.serve.worker import Worker, WorkerPool  # noqa: E402


def test_a_job_runs_and_its_result_carries_provenance_and_the_reproduce_command(tmp_path: Path, astronaut) -> None:
    with _client(tmp_path / "data") as client:
        created = _post(client, _png(astronaut), name="old photo.png")
        assert created.status_code == 202 and created.headers["location"] == f"/api/v1/jobs/{created.json()['id']}"
        job = _wait(client, created.json()["id"])
        assert job["status"] == "done" and job["progress"] == 1 and job["position"] is None
        assert job["command"].startswith("studio restore 'old photo.png' -o old_photo_restored.png --engine classical")
        assert f"--seed {job['settings']['seed']}" in job["command"]
        result = client.get(job["result_url"])
        assert result.status_code == 200 and result.headers["content-type"] == "image/png"
        assert result.headers["x-studio-output-size"] == "64x48" and result.headers["x-studio-engine"] == "classical"
        assert 'filename="old_photo_restored.png"' in result.headers["content-disposition"]
        embedded = json.loads(Image.open(io.BytesIO(result.content)).info["studio"])
        assert embedded["engine"] == "classical" and embedded["settings"]["seed"] == job["settings"]["seed"]
        assert client.get(job["input_url"]).content == _png(astronaut)


def test_settings_are_checked_as_the_cli_checks_them_with_the_same_message(tmp_path: Path, astronaut, photo) -> None:
    cli = CliRunner().invoke(cli_app, ["restore", str(photo), "--scale", "99", "--dry-run"])
    assert cli.exit_code == 2
    with _client(tmp_path / "data") as client:
        refused = _post(client, _png(astronaut), settings=json.dumps({"scale": 99}))
        assert refused.status_code == 422 and refused.json()["detail"] in " ".join(cli.output.split())
        unknown_engine = _post(client, _png(astronaut), settings='{"engine": "warp"}').json()["detail"]
        assert unknown_engine.startswith("--engine 'warp'")
        assert _post(client, _png(astronaut), settings='{"preset": "nope"}').status_code == 422
        assert "unknown key 'bogus'" in _post(client, _png(astronaut), settings='{"bogus": 1}').json()["detail"]
        assert "set by the server" in _post(client, _png(astronaut), settings='{"max_pixels": 1e12}').json()["detail"]
        assert _post(client, _png(astronaut), settings="[1, 2]").status_code == 422
        assert _post(client, _png(astronaut), settings="{nope").status_code == 422
    assert _left_behind(tmp_path / "data") == []


def test_hostile_uploads_get_the_right_status_and_leave_nothing_behind(tmp_path: Path, astronaut) -> None:
    good = _png(astronaut, (64, 48))
    bomb = io.BytesIO()
    Image.new("1", (15000, 12000)).save(bomb, "PNG")  # 180 MP of zeros in ~30 kB: over Pillow's bomb limit
    oversize = b"\x89PNG\r\n\x1a\n" + os.urandom(300_000)
    cases = {
        "empty": (b"", 400),
        "truncated": (good[: len(good) // 2], 422),
        "decompression bomb": (bomb.getvalue(), 413),
        "text named .png": (b"hello, I am not an image\n" * 10, 415),
        "over the upload limit": (oversize, 413),
        "far over the limit (refused before parsing)": (oversize * 5, 413),
        "gif is not accepted": (b"GIF89a" + good, 415),
    }
    data_dir = tmp_path / "data"
    with _client(data_dir, max_upload_bytes=200_000) as client:
        for label, (content, status) in cases.items():
            response = _post(client, content)
            assert response.status_code == status, (label, response.text)
            assert response.json()["detail"], label
        assert "photo.png" in _post(client, good[:200]).json()["detail"]  # the client's name, not a server path
        assert client.get("/api/v1/jobs").json() == []
    assert _left_behind(data_dir) == []


def test_token_is_required_on_every_api_call_when_set(tmp_path: Path, astronaut) -> None:
    with _client(tmp_path / "data", token="s3cret") as client:
        for path in ("/api/v1/engines", "/api/v1/presets", "/api/v1/weights", "/api/v1/jobs", "/api/v1/jobs/x"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
        assert _post(client, _png(astronaut)).status_code == 401
        assert client.get("/api/v1/engines", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert _post(client, _png(astronaut), Authorization="Bearer s3cret").status_code == 202
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["auth"] is True


def test_non_loopback_bind_without_token_is_refused_with_one_line() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "needs --token" in result.output and "Traceback" not in result.output


def test_full_queue_answers_429_with_retry_after(tmp_path: Path, astronaut) -> None:
    with _client(tmp_path / "data", queue_limit=2, start_workers=False) as client:
        assert [_post(client, _png(astronaut)).status_code for _ in range(2)] == [202, 202]
        refused = _post(client, _png(astronaut))
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        queued = client.get("/api/v1/jobs").json()
        assert sorted(job["position"] for job in queued) == [0, 1]
    assert len(_left_behind(tmp_path / "data")) == 2


def test_restart_resumes_queued_and_interrupted_jobs_and_keeps_finished_ones(tmp_path: Path, astronaut) -> None:
    data_dir = tmp_path / "data"
    with _client(data_dir) as client:
        finished = _wait(client, _post(client, _png(astronaut)).json()["id"])
    with _client(data_dir, start_workers=False) as client:
        queued = [_post(client, _png(astronaut)).json()["id"] for _ in range(2)]
        cancelled = _post(client, _png(astronaut)).json()["id"]
        assert client.delete(f"/api/v1/jobs/{cancelled}").json()["status"] == "cancelled"
        assert client.get(f"/api/v1/jobs/{cancelled}/result").status_code == 409
    interrupted = JobStore(data_dir / "jobs.sqlite3")
    assert interrupted.claim_next("cpu").id == queued[0]  # as if the server died mid-job
    interrupted.close()
    with _client(data_dir) as client:
        assert [_wait(client, job_id)["status"] for job_id in queued] == ["done", "done"]
        assert client.get(f"/api/v1/jobs/{finished['id']}").json()["status"] == "done"
        assert client.get(f"/api/v1/jobs/{finished['id']}/result").status_code == 200
        assert client.get(f"/api/v1/jobs/{cancelled}").json()["status"] == "cancelled"


def test_finished_jobs_expire_with_their_files(tmp_path: Path, astronaut) -> None:
    data_dir = tmp_path / "data"
    with _client(data_dir, keep_seconds=0.5) as client:
        job = _wait(client, _post(client, _png(astronaut)).json()["id"])
        assert (data_dir / "jobs" / job["id"]).is_dir()
        deadline = time.monotonic() + 5
        while client.get(f"/api/v1/jobs/{job['id']}").status_code != 404 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert _left_behind(data_dir) == []


def test_cancelling_a_running_job_stops_it_at_its_next_step_and_removes_the_output(
    tmp_path: Path, astronaut, monkeypatch: pytest.MonkeyPatch
) -> None:
    import studio.runner.batch

    written: list[Path] = []
    monkeypatch.setattr(studio.runner.batch, "write_image", lambda path, *args, **kwargs: written.append(path))
    data_dir = tmp_path / "data"
    with _client(data_dir, start_workers=False) as client:
        job_id = _post(client, _png(astronaut)).json()["id"]
    config = ServeConfig(data_dir=data_dir)
    store = JobStore(config.database)
    job = store.claim_next("cpu")
    store.request_cancel(job_id)  # running: flagged, stops when the engine next reports progress
    Worker(WorkerPool(store, config), "cpu", None, 0).run_job(job)
    after = store.get(job_id)
    store.close()
    assert after.status == "cancelled" and not after.output_path.exists()
    assert written == []  # the engine's progress report stopped the job before anything was written


def test_engines_presets_weights_and_the_schema_are_served(tmp_path: Path) -> None:
    with _client(tmp_path / "data", start_workers=False) as client:
        engines = {row["engine"]: row for row in client.get("/api/v1/engines").json()}
        assert engines["classical"]["available"] is True and "sd-x4" in engines
        presets = {row["name"] for row in client.get("/api/v1/presets").json()}
        assert "old-photo" in presets
        weights = {row["name"]: row for row in client.get("/api/v1/weights").json()}
        assert weights["realesrgan-x4plus"]["installed"] in ("yes", "bundled")
        assert "/api/v1/jobs" in client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 404  # Swagger's page loads a CDN: gone, the schema stays
        page = client.get("/").text
        assert 'id="file-input"' in page and "http" not in page.split("<script>")[1].split("</script>")[0]


def test_a_worker_keeps_its_engines_between_jobs_and_rebuilds_only_when_the_model_changes() -> None:
    from dataclasses import replace

    from studio.serve.worker import WarmEngines
    from studio.settings import Settings

    warm = WarmEngines()
    first = warm.engine(Settings(engine="fast", seed=1, prompt="a"))
    second = warm.engine(Settings(engine="fast", seed=2, prompt="b", tile=64))
    assert second is first and first.settings.seed == 2 and first.settings.tile == 64
    assert warm.engine(replace(first.settings, model="realesr-animevideov3")) is not first
