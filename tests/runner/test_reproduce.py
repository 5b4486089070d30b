"""Outputs made before a code move reproduce pixel for pixel from the command they recorded.

tests/fixtures/reproduce/ holds small inputs and outputs written by `studio restore` on an earlier build
(scripts/make_reproduce_fixtures.py): classical with alpha, the default fast path (bundled ncnn x4plus),
the fast path with --fidelity and a colour fix on a 16-bit input, and sd-x4 with a tiny random model
(seed 0; random weights test that the diffusion core computes the same numbers, not quality).
Each output's recorded command is run as a user would, and must give the same pixels and bit depth.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support import FIXTURES

from studio.io import read_image, read_provenance
from studio.testing.tiny_sd import TINY_UNET_CONFIG, TINY_VAE_CONFIG, build_components, save_as_diffusers_folder

REPRODUCE = FIXTURES / "reproduce"
CASES = json.loads((REPRODUCE / "cases.json").read_text())


@pytest.mark.parametrize("output", sorted(CASES))
def test_recorded_command_reproduces_the_committed_output(tmp_path: Path, output: str) -> None:
    for name in ("in.png", "in_rgba.png", "in16.png"):
        shutil.copy(REPRODUCE / name, tmp_path / name)
    if "tiny-sd-x4" in CASES[output]:
        save_as_diffusers_folder(build_components(TINY_UNET_CONFIG, TINY_VAE_CONFIG), tmp_path / "tiny-sd-x4")
    command = read_provenance(REPRODUCE / output)["command"]
    args = shlex.split(command)
    assert args[:2] == ["studio", "restore"] and args[args.index("-o") + 1] == output
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = read_image(REPRODUCE / output, 10**8)
    made = read_image(tmp_path / output, 10**8)
    assert made.bit_depth == expected.bit_depth
    assert made.rgb.shape == expected.rgb.shape
    assert np.array_equal(made.rgb, expected.rgb)
    assert (made.alpha is None) == (expected.alpha is None)
    if expected.alpha is not None:
        assert np.array_equal(made.alpha, expected.alpha)


def test_names_that_look_like_options_follow_a_double_dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.cli.info import runnable
    from studio.engines.classical import ClassicalEngine
    from studio.runner.batch import reproduce_command
    from studio.settings import Settings

    command = reproduce_command(Path("-a b's.png"), Path("-out.png"), Settings(engine="classical"), ClassicalEngine)
    args = shlex.split(command)
    assert args[:4] == ["studio", "restore", "-o", "-out.png"] and args[-2:] == ["--", "-a b's.png"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-out.png").touch()
    assert shlex.split(runnable(command))[3] == "-out_reproduced.png"
    (tmp_path / "-out_reproduced.png").touch()
    assert shlex.split(runnable(command))[3] == "-out_reproduced_2.png"


@pytest.mark.slow
def test_the_printed_command_runs_as_printed_and_gives_the_same_pixels(tmp_path: Path, astronaut: np.ndarray) -> None:
    """`studio info` prints a command that runs in a shell as it stands: a name starting with `-` and holding
    a space and a quote, on the default fast path; it writes beside the original output, which stays as it was."""
    from PIL import Image

    name = "-old photo's.png"
    Image.fromarray(astronaut[180:204, 200:230]).save(tmp_path / name)
    made = subprocess.run(["studio", "restore", "--", name], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    output = tmp_path / "-old photo's_restored.png"
    before = output.read_bytes()
    shown = subprocess.run(["studio", "info", "--", output.name], cwd=tmp_path, capture_output=True, text=True)
    command = next(line for line in shown.stdout.splitlines() if line.startswith("reproduce: "))[len("reproduce: ") :]
    again = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, (command, again.stderr)
    copy = tmp_path / "-old photo's_restored_reproduced.png"
    assert np.array_equal(read_image(copy, 10**8).rgb, read_image(output, 10**8).rgb)
    assert output.read_bytes() == before
