"""`studio compare`: the automatic crop, the sheet's layout (size, labels, crops at 1:1), the slider page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from studio.cli import app
from studio.errors import UsageError
from studio.lab.compare import Crop, most_different_crop, parse_crop


def test_auto_crop_lands_where_the_runs_disagree() -> None:
    base = np.random.default_rng(0).random((200, 300, 3)).astype(np.float32)
    other = base.copy()
    other[120:160, 210:250] = 1.0 - other[120:160, 210:250]
    crop = most_different_crop([base, other], 64)
    assert (crop.width, crop.height) == (64, 64)
    assert crop.x <= 210 and crop.x + 64 >= 250 and crop.y <= 120 and crop.y + 64 >= 160
    small = most_different_crop([base[:40, :50], other[:40, :50]], 64)
    assert (small.x, small.y, small.width, small.height) == (0, 0, 50, 40)


def test_crop_option_is_checked() -> None:
    assert parse_crop("10,20,64,32") == Crop(10, 20, 64, 32)
    with pytest.raises(UsageError, match="X,Y,WIDTH,HEIGHT"):
        parse_crop("10,20")


def test_cli_writes_sheet_page_and_full_images(tmp_path: Path, photo: Path) -> None:
    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        app,
        [
            "compare",
            str(photo),
            "--run",
            "engine=classical",
            "--run",
            "engine=classical,color-fix=histogram",
            "--run",
            "engine=classical,faces=gfpgan",
            "-o",
            str(out),
            "--crop-size",
            "96",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "not run" in result.output  # gfpgan weights are absent here
    summary = json.loads((out / "compare.json").read_text())
    crop = summary["crop"]
    assert summary["output_size"] == [256, 192] and (crop["width"], crop["height"]) == (96, 96)
    sheet = np.asarray(Image.open(out / "sheet.png").convert("RGB"))
    crops = [panel for panel in summary["panels"] if panel["kind"] == "crop"]
    assert [panel["label"] for panel in crops] == [
        "input (nearest neighbour)",
        "engine=classical",
        "engine=classical,color-fix=histogram",
    ]
    for run, panel in zip(summary["runs"][:2], crops[1:]):
        full = np.asarray(Image.open(out / run["file"]).convert("RGB"))
        x, y, w, h = panel["box"]
        expected = full[crop["y"] : crop["y"] + h, crop["x"] : crop["x"] + w]
        assert np.array_equal(sheet[y : y + h, x : x + w], expected)  # pasted at 1:1, not resampled
    first, last = crops[0]["box"], crops[-1]["box"]
    assert sheet.shape[1] > last[0] + last[2] and sheet.shape[0] > first[1] + first[3]
    for panel in crops:  # a label is drawn above every crop: text pixels stand out from the background
        x, y, w, _ = panel["box"]
        label_band = sheet[y - 60 : y - 20, x : x + w].astype(int)
        assert (np.abs(label_band - label_band[0, 0]).sum(axis=-1) > 200).any()
    assert summary["runs"][2]["error"] and "gfpgan" in summary["runs"][2]["error"]
    page = (out / "compare.html").read_text()
    assert page.count('class="slider"') == 2 and "data:image/png;base64," in page
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from the network
    assert Image.open(out / summary["runs"][0]["file"]).info.get("studio")  # full images carry provenance


def test_cli_refuses_runs_with_different_scales(tmp_path: Path, photo: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "compare",
            str(photo),
            "--run",
            "engine=classical,scale=2",
            "--run",
            "engine=classical",
            "-o",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 2 and "one scale" in result.output


def test_runs_with_the_same_engine_settings_share_one_engine_pass(tmp_path: Path, photo: Path) -> None:
    """`fast` and `fast,fidelity=0.5` run the network once: the second blends the first's output toward
    Lanczos (the classical run) as a run of its own would; a run with another engine setting runs again."""
    fast = "engine=fast,model=realesr-animevideov3"
    runs = [fast, f"{fast},fidelity=0.5", "engine=classical", "engine=fast,model=realesr-animevideov3,tile=32"]
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", str(photo), "-o", str(out), *[a for r in runs for a in ("--run", r)]])
    assert result.exit_code == 0, result.output
    reused = [run["reused_engine_output_of"] for run in json.loads((out / "compare.json").read_text())["runs"]]
    assert reused == [None, fast, None, None]
    assert "engine output of engine=fast,model=realesr-animevideov3 reused" in result.output
    first, blended, lanczos, _ = (np.asarray(Image.open(p), dtype=np.float32) for p in sorted(out.glob("0*.png")))
    assert np.abs(blended - (0.5 * first + 0.5 * lanczos)).max() <= 1.0  # rounding of the 8-bit files only
