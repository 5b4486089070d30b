"""What a request may ask for (issue 22, items 1, 2 and 6): no server file named by a client, the output's
pixel budget, and every check `studio restore` makes before the first pixel, all answered before queueing.

Jobs are only queued here (workers off): each refusal must come before any work, and leave nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from studio.cli import app as cli_app

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from support.serving import client, left_behind, png, post  # noqa: E402

from studio.serve.admission import FILE_SETTINGS  # noqa: E402

SERVER_FILES = ["/etc/passwd", "/etc/nonexistent.pth", "../../../etc/passwd", "~/.ssh/id_rsa", "weights/x.pth"]
REGISTRY_NAMES = {
    "model": ("fast", "realesrgan-x4plus"),
    "ensemble": ("fast", ["realesrgan-x4plus", "realesr-animevideov3"]),
    "face_model": ("classical", "gfpgan-1.4"),
}


def _one_line(response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    return detail


def test_every_file_naming_setting_is_declared_so_in_the_table() -> None:
    """The rule follows the table: each setting that can name a file is marked `names_file` there.
    failed before: no such mark; the server passed every setting through."""
    assert FILE_SETTINGS == {"model", "ensemble", "adapter", "caption_model", "face_model"}


@pytest.mark.parametrize("key", sorted(FILE_SETTINGS))
def test_no_setting_can_make_the_server_read_a_file_of_the_clients_choosing(tmp_path: Path, astronaut, key) -> None:
    """Every path is 422 with one line before queueing, and existing and missing files read the same.
    failed before: {"face_model": "/etc/shadow"} ran and returned the file's sha256 in the provenance;
    "/etc/nonexistent.pth" (503) and "/etc/passwd" (202) told which files exist."""
    data_dir = tmp_path / "data"
    with client(data_dir, start_workers=False) as app:
        answers = set()
        for path in SERVER_FILES:
            value = [path, path] if key == "ensemble" else path
            settings = {"engine": "fast", key: value, **({"faces": "gfpgan"} if key == "face_model" else {})}
            refused = post(app, png(astronaut), settings=json.dumps(settings))
            assert refused.status_code == 422, (path, refused.text)
            answers.add(_one_line(refused).replace(json.dumps(path), "PATH"))
            assert "registry name" in refused.json()["detail"]
        assert len(answers) == 1  # nothing tells an existing file from a missing one
        assert app.get("/api/v1/jobs").json() == []
    assert left_behind(data_dir) == []


@pytest.mark.parametrize("key", sorted(REGISTRY_NAMES))
def test_registry_names_are_still_accepted(tmp_path: Path, astronaut, key) -> None:
    """failed before: passed (registry names were always accepted); guards that the rule keeps them."""
    engine, value = REGISTRY_NAMES[key]
    settings = {"engine": engine, key: value, **({"faces": "gfpgan"} if key == "face_model" else {})}
    with client(tmp_path / "data", start_workers=False) as app:
        created = post(app, png(astronaut), settings=json.dumps(settings))
        assert created.status_code in (202, 503), created.text  # 503: these weights are not on this machine
        if created.status_code == 202:
            assert created.json()["settings"][key] == value


def test_the_operators_weights_folder_is_reachable_by_file_name_only(tmp_path: Path, astronaut) -> None:
    """Paths come from the operator (serve --weights-dir): a client names a file of that folder, nothing else.
    failed before: no --weights-dir; any server path was accepted."""
    folder = tmp_path / "operator-weights"
    folder.mkdir()
    (folder / "house-model.pth").write_bytes(b"weights of the operator's choosing")
    (tmp_path / "outside.pth").write_bytes(b"not in the folder")
    with client(tmp_path / "data", start_workers=False, weights_dirs=(folder,)) as app:
        accepted = post(app, png(astronaut), settings=json.dumps({"engine": "fast", "model": "house-model.pth"}))
        assert accepted.status_code == 202, accepted.text
        for name in ("../outside.pth", str(folder / "house-model.pth"), ".hidden.pth", "missing.pth"):
            refused = post(app, png(astronaut), settings=json.dumps({"engine": "fast", "model": name}))
            assert refused.status_code == 422 and "weights folders" in _one_line(refused), name


def test_run_options_that_name_files_are_not_settings_a_client_can_send(tmp_path: Path, astronaut) -> None:
    """--config and --preset-dir are the operator's (serve --preset-dir).
    failed before: passed (unknown keys were refused); guards it."""
    with client(tmp_path / "data", start_workers=False) as app:
        for key in ("config", "preset_dir", "preset-dir", "output", "report"):
            refused = post(app, png(astronaut), settings=json.dumps({key: "/etc"}))
            assert refused.status_code == 422 and "unknown key" in _one_line(refused), key


def test_the_output_budget_is_checked_up_front_and_the_cli_says_the_same(tmp_path: Path, astronaut) -> None:
    """scale x input over --max-output-pixels: 413 in one line before queueing; `studio restore --dry-run`
    and the real run refuse it with the same words.
    failed before: only the input was budgeted (a 360 KB upload at scale 16 took the server to 2.9 GB)."""
    photo = tmp_path / "photo.png"
    photo.write_bytes(png(astronaut, (64, 48)))
    data_dir = tmp_path / "data"
    with client(data_dir, start_workers=False, max_output_pixels=100_000) as app:
        refused = post(app, photo.read_bytes(), settings=json.dumps({"engine": "classical", "scale": 8}))
        assert refused.status_code == 413
        detail = _one_line(refused)
        assert "512x384 output" in detail and "100,000" in detail
        within = post(app, photo.read_bytes(), settings=json.dumps({"engine": "classical", "scale": 4}))
        assert within.status_code == 202
    with client(tmp_path / "default", start_workers=False) as app:  # the 480x480 at scale 16: 59 MP
        big = post(app, png(astronaut, (480, 480)), settings=json.dumps({"engine": "classical", "scale": 16}))
        assert big.status_code == 413 and "7680x7680" in big.json()["detail"]
    flags = ["restore", str(photo), "-e", "classical", "--scale", "8", "--max-output-pixels", "100000"]
    dry = CliRunner().invoke(cli_app, [*flags, "--dry-run"])
    real = CliRunner().invoke(cli_app, [*flags, "-o", str(tmp_path / "out.png")])
    expected = detail.replace("photo.png", str(photo))
    assert dry.exit_code == real.exit_code == 1
    assert expected in " ".join(dry.output.split()) and expected in " ".join(real.output.split())
    assert not (tmp_path / "out.png").exists()
    assert len(left_behind(data_dir)) == 1


@pytest.mark.parametrize(
    "settings, flags",
    [
        ({"format": "jpg", "quality": 10}, ["--format", "jpg", "--quality", "10"]),
        ({"var": {"x": "y"}}, ["--var", "x=y"]),
        ({"engine": "fast", "model": "gfpgan-1.4"}, ["--engine", "fast", "--model", "gfpgan-1.4"]),
    ],
)
def test_every_check_the_cli_makes_before_the_first_pixel_answers_before_queueing(
    tmp_path: Path, astronaut, photo, settings, flags
) -> None:
    """Same verdict, same words as `studio restore --dry-run` (exit 2 there, 422 here), nothing queued.
    failed before: {"format": "jpg", "quality": 10} got 202 and failed later; the CLI refused it with exit 2
    (the other two cases passed before: they guard checks that already held)."""
    settings = {"variables": settings["var"]} if "var" in settings else settings
    cli = CliRunner().invoke(cli_app, ["restore", str(photo), *flags, "--dry-run"])
    assert cli.exit_code == 2
    with client(tmp_path / "data", start_workers=False) as app:
        refused = post(app, png(astronaut), settings=json.dumps(settings))
        assert refused.status_code == 422, refused.text
        assert _one_line(refused) in " ".join(cli.output.split())
        assert app.get("/api/v1/jobs").json() == []
    assert left_behind(tmp_path / "data") == []
