"""Faults while a batch runs, simulated for real: a read-only and a full file system (tiny tmpfs mounts, where
this machine lets the test mount them), a symbolic-link loop, a 250-character name, a missing input, and
temporary files left by a killed run. Each fault is one line in words, the batch goes on where it can, and
the summary is always printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from studio.cli import app

CLASSICAL = ["--engine", "classical"]  # no model to load: these tests are about files, not pixels


def _restore(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["restore", *map(str, args)])
    return result.exit_code, result.output


@pytest.fixture
def shots(tmp_path: Path, astronaut: np.ndarray) -> list[Path]:
    folder = tmp_path / "shots"
    folder.mkdir()
    paths = [folder / "a.png", folder / "b.png"]
    for index, path in enumerate(paths):
        Image.fromarray(astronaut[index * 40 :][:64, :64]).save(path)
    return paths


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a tmpfs with the given options (`ro`, `size=64k`); skips where the test may not mount."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mount{len(mounted)}"
        point.mkdir()
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root (CI runs these as root in a container)")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def _one_line_each(output: str, words: str, count: int) -> None:
    assert "Traceback" not in output and "internal error" not in output and "Errno" not in output, output
    assert output.count(words) >= count, output
    assert "succeeded" in output.splitlines()[-1], output  # the summary is the last line, always


def test_read_only_output_folder(shots: list[Path], tmpfs: Callable[[str], Path]) -> None:
    folder = tmpfs("ro,size=1m")
    code, output = _restore(*shots, "-o", f"{folder}/", *CLASSICAL)
    assert code == 1
    _one_line_each(output, "read-only file system", 3)  # both files, then the report
    assert "report not written" in output and "0/2 succeeded, 2 failed" in output


def test_full_disk_fails_the_file_and_the_batch_goes_on(
    shots: list[Path], tmpfs: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = tmpfs("size=12k")  # room for the report, not for a 256x256 PNG
    code, output = _restore(*shots, "-o", f"{folder}/", "--report", tmp_path / "report.json", *CLASSICAL)
    assert code == 1
    _one_line_each(output, "disk full", 2)
    assert "0/2 succeeded, 2 failed; report:" in output
    assert os.listdir(folder) == []  # no partial file left on the full disk


def test_a_symlink_loop_fails_alone(shots: list[Path], tmp_path: Path) -> None:
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    code, output = _restore(shots[0], loop, "-o", tmp_path / "out/", *CLASSICAL)
    assert code == 1
    _one_line_each(output, f"{loop}: symbolic link loop", 1)
    assert (tmp_path / "out" / "a.png").exists() and "1/2 succeeded, 1 failed" in output


def test_a_name_too_long_is_one_line_before_any_work(shots: list[Path], tmp_path: Path) -> None:
    long = shots[0].with_name("n" * 246 + ".png")  # fits; `<name>_restored.png` (259 bytes) does not
    shots[0].rename(long)
    code, output = _restore(long, *CLASSICAL)
    assert code == 1
    _one_line_each(output, "name too long (259 bytes", 1)
    code, output = _restore(long, *CLASSICAL, "--dry-run")
    assert code == 1 and "name too long (259 bytes" in output


def test_temporary_names_fit_when_the_output_name_does(shots: list[Path], tmp_path: Path) -> None:
    """In folder mode the output keeps the 250-byte name; its temporary name must not overflow 255 bytes."""
    long = shots[0].with_name("é" * 123 + "nnnn.png")  # 250 bytes in UTF-8, and multi-byte characters to cut
    shots[0].rename(long)
    code, output = _restore(long.parent, "-o", tmp_path / "out", *CLASSICAL)
    assert code == 0, output
    assert (tmp_path / "out" / long.name).exists()


def test_a_missing_input_says_no_such_file(shots: list[Path], tmp_path: Path) -> None:
    """`a/x.jpg a/x.png` with no a/x.png: the missing file, not a clash of output names."""
    missing = shots[0].with_suffix(".jpg")
    code, output = _restore(shots[0], missing, "-o", tmp_path / "out/", *CLASSICAL)
    assert code == 1
    _one_line_each(output, f"{missing}: no such file", 1)
    assert "same output" not in output


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_removes_stale_temporary_files_of_its_own_outputs(shots: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = [
        f".a.{_dead_pid()}.k2j_9x0q.part.png",
        ".b.abcd1234.part.png",
        f".studio_report.{_dead_pid()}.zz11yy22.part.json",
    ]
    kept = [f".a.{os.getpid()}.k2j_9x0q.part.png", ".a.notours.part.png", ".c.abcd1234.part.png", "a.part.png"]
    for name in stale + kept:
        (out / name).write_bytes(b"partial")
    (out / "a.png").write_bytes(b"x")  # an earlier output, kept by --skip-existing
    code, output = _restore(*shots, "-o", out, "--skip-existing", *CLASSICAL)
    assert code == 0, output
    assert sorted(p.name for p in out.iterdir() if "part" in p.name) == sorted(kept)
    assert "removed 3 temporary file(s)" in output
