"""`studio restore --remote URL` against a real `studio serve` app on 127.0.0.1 (in this process, classical
engine): the same pixels and metadata as a local run, the reproduce command that runs anywhere, and every
refusal before the first upload as one line with the local run's exit code."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from support.serving import TOKEN, free_port
from typer.testing import CliRunner

from studio.cli import app
from studio.io import read_provenance


def restore(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["restore", *args])
    return result.exit_code, result.output


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture
def rgba(tmp_path: Path, astronaut: np.ndarray) -> Path:
    """A real photo with transparency and a print resolution."""
    image = Image.fromarray(astronaut[100:260, 150:350]).resize((40, 32), Image.Resampling.LANCZOS).convert("RGBA")
    alpha = np.full((32, 40), 255, np.uint8)
    alpha[:, :8] = 0
    image.putalpha(Image.fromarray(alpha))
    path = tmp_path / "cutout.png"
    image.save(path, dpi=(150, 150))
    return path


@pytest.mark.parametrize(
    ("source", "suffix"),
    [
        ("photo", ".png"),
        pytest.param("rgba", ".webp", marks=pytest.mark.slow),  # alpha, print resolution, WebP written here
        pytest.param("photo", ".jpg", marks=pytest.mark.slow),  # a lossy output encoded here from the PNG
    ],
)
def test_remote_output_equals_local_and_its_command_reproduces_it_anywhere(
    request: pytest.FixtureRequest, studio_server: str, tmp_path: Path, source: str, suffix: str
) -> None:
    image = request.getfixturevalue(source)
    remote, local = tmp_path / f"remote{suffix}", tmp_path / f"local{suffix}"
    flags = ["--engine", "classical", "--scale", "2", "--seed", "3"]
    code, output = restore(str(image), "-o", str(remote), *flags, "--remote", studio_server, "--remote-token", TOKEN)
    assert code == 0, output
    assert restore(str(image), "-o", str(local), *flags)[0] == 0
    assert np.array_equal(pixels(remote), pixels(local))
    provenance, local_provenance = read_provenance(remote), read_provenance(local)
    assert provenance["remote"] == {
        "provider": "studio",
        "server": studio_server,
        "studio_version": local_provenance["studio_version"],
        "device": "cpu",
        "job": provenance["remote"]["job"],
    }
    assert provenance["print_size"] == local_provenance["print_size"]
    assert provenance["settings"]["remote_token"] == "(set)" and TOKEN not in json.dumps(provenance)
    command = shlex.split(provenance["command"])
    assert "--remote" not in command and command[5:] == shlex.split(local_provenance["command"])[5:]
    again_here, again_there = tmp_path / f"here{suffix}", tmp_path / f"there{suffix}"
    assert restore(*command[2:3], "-o", str(again_here), *command[5:])[0] == 0
    code, output = restore(*command[2:3], "-o", str(again_there), *command[5:], "--remote", studio_server)
    assert code == 2 and "refused the token" in output  # no token: refused before any upload
    assert (
        restore(
            *command[2:3], "-o", str(again_there), *command[5:], "--remote", studio_server, "--remote-token", TOKEN
        )[0]
        == 0
    )
    assert np.array_equal(pixels(again_here), pixels(remote)) and np.array_equal(pixels(again_there), pixels(remote))


def test_a_wrong_token_is_one_line_exit_2_and_never_printed(studio_server: str, photo: Path, tmp_path: Path) -> None:
    code, output = restore(
        str(photo), "-o", str(tmp_path / "out.png"), "--remote", studio_server, "--remote-token", "guess"
    )
    assert code == 2
    assert output.count("\n") == 1 and "refused the token (HTTP 401" in output and "guess" not in output
    assert not (tmp_path / "out.png").exists()


def test_the_token_from_the_environment_is_used_and_kept_out_of_reports_and_dry_runs(
    studio_server: str, photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_REMOTE_TOKEN", TOKEN)
    code, output = restore(
        str(photo), "-o", str(tmp_path / "out.png"), "--engine", "classical", "--remote", studio_server, "--dry-run"
    )
    assert code == 0 and "remote_token = None" in output and "dry run: nothing was sent or written" in output
    config = tmp_path / "remote.toml"
    config.write_text(f'[restore]\nremote = "{studio_server}"\nremote_token = "{TOKEN}"\n')
    monkeypatch.delenv("STUDIO_REMOTE_TOKEN")
    report = tmp_path / "report.json"
    code, output = restore(
        str(photo),
        "-o",
        str(tmp_path / "out.png"),
        "--engine",
        "classical",
        "--config",
        str(config),
        "--report",
        str(report),
    )
    assert code == 0, output
    assert TOKEN not in output and TOKEN not in report.read_text()
    assert json.loads(report.read_text())["settings"]["remote_token"] == "(set)"


def test_a_server_that_is_not_there_stops_before_any_work(photo: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for extra in ([], ["--dry-run"]):
        code, output = restore(str(photo), "-o", str(tmp_path / "out.png"), "--remote", url, *extra)
        assert code == 3 and output.count("\n") == 1
        assert "stopped answering (ConnectError" in output and "is 'studio serve' running there?" in output


def test_the_remote_answers_for_its_engines_and_the_dry_run_gives_the_same_verdict(
    studio_server: str, photo: Path, tmp_path: Path
) -> None:
    remote = ["--remote", studio_server, "--remote-token", TOKEN]
    for extra in ([], ["--dry-run"]):  # no SD x4 weights there: exit 3, as locally
        code, output = restore(str(photo), "-o", str(tmp_path / "out.png"), "--engine", "sd-x4", *remote, *extra)
        assert (
            code == 3
            and output.count("\n") == 1
            and "--engine sd-x4: stabilityai/stable-diffusion-x4-upscaler is not in" in output
        )
        code, output = restore(
            str(photo), "-o", str(tmp_path / "out.png"), "--engine", "fast", "--model", "nonesuch", *remote, *extra
        )
        assert code == 2 and output.count("\n") == 1 and "nonesuch" in output
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"\0")
    code, output = restore(str(photo), "--model", str(weights), *remote)
    assert code == 2 and "a file on this machine cannot be used by studio server" in output
    code, output = restore(str(photo), "--device", "cpu", *remote)
    assert code == 2 and "picks its device" in output
    assert not (tmp_path / "out.png").exists()


def test_skip_existing_resumes_a_batch_without_sending_the_finished_files(
    studio_server: str, astronaut: np.ndarray, tmp_path: Path
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(astronaut[60 * index : 60 * index + 96, :128]).resize((32, 24)).save(folder / f"s{index}.png")
    out = tmp_path / "out"
    remote = ["--engine", "classical", "--scale", "2", "--remote", studio_server, "--remote-token", TOKEN]
    assert restore(str(folder), "-o", str(out), *remote)[0] == 0
    (out / "s1.png").unlink()
    jobs_before = _job_count(studio_server)
    code, output = restore(str(folder), "-o", str(out), *remote, "--skip-existing")
    assert code == 0 and "1/3 succeeded, 2 skipped (output exists)" in output
    assert _job_count(studio_server) == jobs_before + 1
    report = json.loads((out / "studio_report.json").read_text())
    assert [entry["status"] for entry in report["files"]] == ["skipped", "ok", "skipped"]


def test_the_first_upload_to_a_host_is_said_once(studio_server: str, photo: Path, tmp_path: Path) -> None:
    remote = ["--engine", "classical", "--remote", studio_server, "--remote-token", TOKEN, "--overwrite"]
    first = restore(str(photo), "-o", str(tmp_path / "a.png"), *remote)[1]
    second = restore(str(photo), "-o", str(tmp_path / "a.png"), *remote)[1]
    assert "first upload to 127.0.0.1" in first and "each input file and its settings" in first
    assert "first upload" not in second


def test_a_server_refuses_to_forward_jobs(studio_server: str, photo: Path) -> None:
    response = httpx.post(
        f"{studio_server}/api/v1/jobs",
        files={"file": ("photo.jpg", photo.read_bytes())},
        data={"settings": json.dumps({"remote": "http://elsewhere:8765"})},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 422 and "the client's" in response.json()["detail"]


def _job_count(url: str) -> int:
    return len(httpx.get(f"{url}/api/v1/jobs?limit=500", headers={"Authorization": f"Bearer {TOKEN}"}).json())
