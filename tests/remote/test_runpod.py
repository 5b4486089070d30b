"""`--remote runpod:ENDPOINT_ID` against a local stand-in for RunPod's queue API that runs studio's real worker
handler (studio.serve.runpod), following RunPod's documented contract (tests/support/remote_fakes.py):
https://docs.runpod.io/serverless/endpoints/send-requests, https://docs.runpod.io/serverless/endpoints/operation-reference,
https://docs.runpod.io/sdks/python/endpoints. The live service was not reached."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.remote_fakes import ENDPOINT, TOKEN, fake_runpod
from typer.testing import CliRunner

from studio.cli import app
from studio.io import read_provenance
from studio.serve.runpod import handler

REMOTE = f"runpod:{ENDPOINT}"


@pytest.fixture
def runpod(monkeypatch: pytest.MonkeyPatch):
    with fake_runpod() as service:
        monkeypatch.setenv("STUDIO_RUNPOD_API_URL", f"{service.url}/v2")
        monkeypatch.setenv("RUNPOD_API_KEY", TOKEN)
        yield service


def restore(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["restore", *args])
    return result.exit_code, result.output


def test_studio_on_runpod_gives_the_local_pixels_through_run_status_and_rate_limits(
    runpod, photo: Path, tmp_path: Path
) -> None:
    runpod.behaviour.throttle_first = 1  # 429 + Retry-After on the check job's /run
    runpod.behaviour.delay_s = 0.3  # jobs wait in the queue a little
    remote, local = tmp_path / "remote.png", tmp_path / "local.png"
    flags = ["--engine", "classical", "--scale", "2", "--seed", "9"]
    code, output = restore(str(photo), "-o", str(remote), *flags, "--remote", REMOTE, "--yes")
    assert code == 0, output
    assert restore(str(photo), "-o", str(local), *flags)[0] == 0
    assert np.array_equal(np.asarray(Image.open(remote)), np.asarray(Image.open(local)))
    provenance = read_provenance(remote)
    assert provenance["remote"]["provider"] == "runpod" and provenance["remote"]["endpoint"] == ENDPOINT
    assert provenance["remote"]["device"] == "cpu" and "--remote" not in provenance["command"]
    assert runpod.submissions("/run") == 3  # throttled, the check job, the image job


def test_several_jobs_are_in_flight_at_once(runpod, photo: Path, tmp_path: Path) -> None:
    runpod.behaviour.delay_s = 0.3
    copies = []
    for index in range(3):
        copies.append(tmp_path / f"copy{index}.jpg")
        copies[-1].write_bytes(photo.read_bytes())
    code, output = restore(
        *map(str, copies), "-o", str(tmp_path / "out"), "--engine", "classical", "--remote", REMOTE, "--yes"
    )
    assert code == 0 and "3/3 succeeded" in output
    assert runpod.peak == 3  # RunPod's jobs are queued together, not one after another


def test_the_check_job_gives_the_workers_verdict_before_any_image_is_sent(runpod, photo: Path, tmp_path: Path) -> None:
    for extra in ([], ["--dry-run"]):
        code, output = restore(
            str(photo), "-o", str(tmp_path / "o.png"), "--engine", "sd-x4", "--remote", REMOTE, "--yes", *extra
        )
        assert code == 3 and output.count("\n") == 1 and "engine sd-x4 cannot run here" in output
    images = [j for j in runpod.jobs.values() if j.get("output", {}) and "image" in str(j.get("output"))]
    assert not images and not (tmp_path / "o.png").exists()


def test_a_failed_job_fails_its_file_in_one_line(runpod, photo: Path, tmp_path: Path) -> None:
    runpod.behaviour.fail_with = None
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    code, output = restore(
        str(broken), "-o", str(tmp_path / "o.png"), "--engine", "classical", "--remote", REMOTE, "--yes"
    )
    assert code == 1 and "failed:" in output and "1 failed" in output


def test_a_wrong_key_and_an_unknown_endpoint_are_one_line(runpod, photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = restore(str(photo), "--remote", "runpod:nosuchendpoint", "--yes")
    assert code == 2 and "RunPod has no such endpoint (404)" in output
    monkeypatch.setenv("RUNPOD_API_KEY", "wrong-key")
    code, output = restore(str(photo), "--remote", REMOTE, "--yes")
    assert code == 2 and "refused the token (HTTP 401" in output and "wrong-key" not in output


def test_ctrl_c_cancels_the_queued_jobs_on_runpod(runpod, photo: Path, tmp_path: Path) -> None:
    from studio.remote import plan_remote, remote_target, run_remote_batch

    cli = {"remote": REMOTE, "engine": "classical", "scale": 2.0}
    plan = plan_remote(remote_target(cli, None), cli, [photo], tmp_path / "out.png")
    runpod.behaviour.delay_s = 30  # the image job stays queued

    def on_job_done(result):
        raise AssertionError("nothing should finish")

    calls = {"polls": 0}
    original = plan.provider.poll

    def poll_then_interrupt(flight):
        calls["polls"] += 1
        if calls["polls"] == 2:
            raise KeyboardInterrupt
        return original(flight)

    plan.provider.poll = poll_then_interrupt
    report = run_remote_batch(plan, on_job_done=on_job_done)
    assert report.interrupted and report.results[0].status == "interrupted"
    image_jobs = [job for job in runpod.jobs.values() if job["status"] == "CANCELLED"]
    assert len(image_jobs) == 1 and runpod.submissions("/cancel/" + image_jobs[0]["id"]) == 1


def test_the_worker_handler_refuses_what_a_job_must_not_set(photo: Path) -> None:
    image = base64.b64encode(photo.read_bytes()).decode()
    assert "worker's to set" in handler({"input": {"image": image, "settings": {"device": "cuda"}}})["error"]
    assert "unknown key" in handler({"input": {"image": image, "settings": {"nonsense": 1}}})["error"]
    assert "not base64" in handler({"input": {"image": "???", "name": "x.png"}})["error"]
    verdict = handler({"input": {"check": True, "settings": {"engine": "sd-x4"}}})
    assert verdict["ok"] is False and verdict["kind"] == "environment"
    done = handler({"input": {"image": image, "name": "photo.jpg", "settings": {"engine": "classical", "scale": 2}}})
    assert done["provenance"]["command"].startswith("studio restore photo.jpg -o photo_restored.png")
    assert json.loads(json.dumps(done))["studio_version"]
