"""`--remote replicate:OWNER/MODEL[:VERSION]` against a local stand-in that follows Replicate's documented HTTP
API (tests/support/remote_fakes.py cites the pages): https://replicate.com/docs/reference/http,
https://replicate.com/docs/topics/predictions, https://replicate.com/docs/topics/predictions/rate-limits,
https://replicate.com/docs/topics/predictions/input-files. The live service was not reached."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.remote_fakes import TOKEN, VERSION, fake_replicate
from typer.testing import CliRunner

from studio.cli import app
from studio.io import read_provenance

MODEL = "replicate:acme/upscaler"


@pytest.fixture
def replicate(monkeypatch: pytest.MonkeyPatch):
    with fake_replicate() as service:
        monkeypatch.setenv("STUDIO_REPLICATE_API_URL", f"{service.url}/v1")
        monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
        yield service


def restore(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["restore", *args])
    return result.exit_code, result.output


def test_a_model_runs_with_its_inputs_mapped_and_studio_post_processing_here(
    replicate, photo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.tiff"
    replicate.behaviour.throttle_first = 1  # 429 with Retry-After: 1 on the first prediction, then accepted
    code, output = restore(
        str(photo), "-o", str(out), "--remote", MODEL, "--scale", "2", "--color-fix", "adain", "--yes"
    )
    assert code == 0, output
    assert replicate.submissions("/v1/predictions") == 2
    prediction = next(iter(replicate.jobs.values()))
    assert prediction["input"]["scale"] == 2.0 and prediction["input"]["image"].startswith("data:image/png;base64,")
    assert "face_enhance" not in prediction["input"]
    delivery = [headers for method, path, headers in replicate.behaviour.calls if path.startswith("/delivery/")]
    assert delivery and all("Authorization" not in headers for headers in delivery)  # no token to the file host
    provenance = read_provenance(out)
    assert provenance["engine"] == "replicate" and provenance["model"] == "acme/upscaler"
    assert provenance["engine_details"]["version"] == VERSION and provenance["color_fix"] == "adain"
    assert provenance["remote"]["prediction"] == prediction["id"]
    assert Image.open(out).size == (128, 96)
    command = shlex.split(provenance["command"])
    assert command[5:7] == ["--remote", f"{MODEL}:{VERSION}"] and "--color-fix" in command


def test_a_model_without_a_scale_input_is_resized_here_and_unmappable_settings_are_refused(
    replicate, photo: Path, tmp_path: Path
) -> None:
    model = "replicate:acme/diffusion-upscaler"
    for extra in ([], ["--dry-run"]):
        code, output = restore(str(photo), "--remote", model, "--strength", "0.3", "--tile", "64", "--yes", *extra)
        assert (
            code == 2
            and output.count("\n") == 1
            and "--strength, --tile: Replicate acme/diffusion-upscaler has no input" in output
        )
    code, output = restore(str(photo), "--remote", model, "--faces", "gfpgan", "--yes")
    assert code == 2 and "--faces" in output
    code, output = restore(str(photo), "--remote", model, "--steps", "500", "--yes")
    assert code == 2 and "'num_inference_steps' takes 1 to 100" in output
    out = tmp_path / "out.png"
    code, output = restore(
        str(photo),
        "-o",
        str(out),
        "--remote",
        model,
        "--scale",
        "3",
        "--prompt",
        "a portrait",
        "--steps",
        "8",
        "--seed",
        "5",
        "--yes",
    )
    assert code == 0, output
    sent = next(iter(replicate.jobs.values()))["input"]
    assert {key: sent[key] for key in ("prompt", "seed", "num_inference_steps")} == {
        "prompt": "a portrait",
        "seed": 5,
        "num_inference_steps": 8,
    }
    assert Image.open(out).size == (192, 144)  # the model gave 4x; studio's Lanczos took it to exactly 3x
    assert "Lanczos to 192x144" in read_provenance(out)["notes"][0]


def test_a_paid_batch_is_confirmed_first_and_a_script_without_yes_stops(replicate, photo: Path, tmp_path: Path) -> None:
    code, output = restore(str(photo), "-o", str(tmp_path / "out.png"), "--remote", MODEL)
    assert code == 2 and output.count("\n") == 1
    assert "this run sends 1 job(s) to Replicate acme/upscaler, which bills each one; add --yes" in output
    assert replicate.submissions("/v1/predictions") == 0
    code, output = restore(str(photo), "-o", str(tmp_path / "out.png"), "--remote", MODEL, "--dry-run")
    assert code == 0 and "1 job(s) would be sent" in output and replicate.submissions("/v1/predictions") == 0


def test_missing_or_wrong_tokens_and_unknown_models_are_one_line(
    replicate, photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = restore(str(photo), "--remote", "replicate:acme/nonesuch", "--yes")
    assert code == 2 and "Replicate has no such model or version (404)" in output
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_wrong")
    code, output = restore(str(photo), "--remote", MODEL, "--yes")
    assert code == 2 and "refused the token (HTTP 401" in output and "r8_wrong" not in output
    monkeypatch.delenv("REPLICATE_API_TOKEN")
    code, output = restore(str(photo), "--remote", MODEL, "--yes")
    assert code == 2 and "Replicate needs a token: set REPLICATE_API_TOKEN or --remote-token" in output


def test_a_failed_prediction_fails_its_file_and_the_batch_goes_on(replicate, photo: Path, tmp_path: Path) -> None:
    replicate.behaviour.fail_with = "CUDA out of memory"
    second = tmp_path / "second.jpg"
    second.write_bytes(photo.read_bytes())
    code, output = restore(str(photo), str(second), "-o", str(tmp_path / "out"), "--remote", MODEL, "--yes")
    assert code == 1 and "0/2 succeeded, 2 failed" in output and "photo.jpg: CUDA out of memory" in output
    report = json.loads((tmp_path / "out" / "studio_report.json").read_text())
    assert [entry["status"] for entry in report["files"]] == ["failed", "failed"]


def test_ctrl_c_cancels_the_running_predictions(replicate, photo: Path, tmp_path: Path) -> None:
    """A slow prediction; Ctrl-C arrives while it runs (raised from the progress display, as the terminal's
    signal would be): the client cancels it on Replicate, reports it interrupted and writes nothing."""
    from studio.remote import plan_remote, remote_target, run_remote_batch

    replicate.behaviour.delay_s = 30
    cli = {"remote": MODEL, "scale": 2.0}
    plan = plan_remote(remote_target(cli, None), cli, [photo], tmp_path / "out.png")

    def on_job_start(job, index, total):
        def step(done: int, steps: int) -> None:
            raise KeyboardInterrupt

        return step

    report = run_remote_batch(plan, on_job_start=on_job_start)
    assert report.interrupted and [r.status for r in report.results] == ["interrupted"]
    assert [p["status"] for p in replicate.jobs.values()] == ["canceled"]
    assert replicate.submissions("/cancel") == 1 and not (tmp_path / "out.png").exists()


def test_large_inputs_go_through_the_files_api(replicate, tmp_path: Path) -> None:
    big = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (640, 640, 3), dtype=np.uint8)).save(big)
    code, output = restore(str(big), "-o", str(tmp_path / "out.png"), "--remote", MODEL, "--scale", "0.5", "--yes")
    assert code == 0, output
    assert replicate.submissions("/v1/files") == 1
    assert next(iter(replicate.jobs.values()))["input"]["image"].startswith(f"{replicate.url}/delivery/")
