"""A damaged or foreign official weights file stops a run in one line, and `--dry-run` says the same line.

For each engine that reads official files (stablesr: a torch .ckpt; supir: a .safetensors), six damaged copies
of a toy-width random file in the official layout: truncated, a key renamed, a key dropped, a tensor of the
wrong shape, a key no module takes, and a foreign file (a PNG under the weights name). The dry run reads only
the file's index; the real run stops at the same check before the first pixel; and the loader itself, called
without the up-front check, raises the very same line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from support.stablesr_tiny import write_base, write_official_files
from typer.testing import CliRunner

from studio.cli import app
from studio.errors import StudioError
from studio.settings import resolve

DAMAGES = ("truncated", "renamed", "dropped", "reshaped", "extra", "foreign")


def _damaged(state: dict[str, torch.Tensor], damage: str, key: str) -> dict[str, torch.Tensor]:
    state = dict(state)
    if damage == "renamed":
        state[key + "_renamed"] = state.pop(key)
    elif damage == "dropped":
        del state[key]
    elif damage == "reshaped":
        state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
    elif damage == "extra":
        state[key.rsplit(".", 2)[0] + ".unexpected.weight"] = torch.zeros(3)
    return state


def write_damaged(good: Path, damage: str, key: str, folder: Path, photo: Path) -> Path:
    """A copy of `good` with one damage, in the same format."""
    from safetensors.torch import load_file, save_file

    target = folder / f"{damage}{good.suffix}"
    if damage == "truncated":
        data = good.read_bytes()
        target.write_bytes(data[: len(data) * 3 // 5])
    elif damage == "foreign":
        target.write_bytes(photo.read_bytes())
    elif good.suffix == ".safetensors":
        save_file(_damaged(load_file(good), damage, key), str(target))
    else:
        state = torch.load(good, weights_only=True)["state_dict"]
        torch.save({"state_dict": _damaged(state, damage, key)}, target)
    return target


@pytest.fixture(scope="module")
def stablesr_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("damaged_stablesr")
    adapter, _ = write_official_files(root / "official")
    return write_base(root / "sd2"), adapter


@pytest.fixture(scope="module")
def supir_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import json

    from safetensors.torch import save_file
    from support import FIXTURES

    from studio.testing import tiny_sdxl

    root = tmp_path_factory.mktemp("damaged_supir")
    tiny_sdxl.save_base(tiny_sdxl.build_base(tiny_sdxl.TINY_UNET_CONFIG), root / "base")
    keys = json.loads((FIXTURES / "supir_tiny_keys.json").read_text())["keys"]
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=generator) * 0.02 for key, shape in keys.items()}
    save_file(state, str(root / "SUPIR-tiny.safetensors"))
    return root / "base", root / "SUPIR-tiny.safetensors"


ENGINES: dict[str, tuple[str, str]] = {
    "stablesr": ("stablesr_files", "structcond_stage_model.input_blocks.1.0.in_layers.2.weight"),
    "supir": ("supir_files", "model.control_model.input_blocks.1.0.in_layers.2.weight"),
}


def _direct_load(engine: str, base: Path, adapter: Path) -> Callable[[], object]:
    """The engine's own loader, without the plan's up-front check."""
    settings = resolve({"engine": engine, "model": str(base), "adapter": str(adapter), "device": "cpu"})
    if engine == "stablesr":
        from studio.engines.stablesr.engine import StableSREngine

        return lambda: StableSREngine(settings)._load()
    from studio.engines.supir.engine import SupirEngine

    return lambda: SupirEngine(settings)._load()


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_damaged_file_stops_dry_run_and_run_with_the_loaders_line(
    request: pytest.FixtureRequest, engine: str, damage: str, photo: Path, tmp_path: Path
) -> None:
    fixture, key = ENGINES[engine]
    base, good = request.getfixturevalue(fixture)
    bad = write_damaged(good, damage, key, tmp_path, photo)
    with pytest.raises(StudioError) as loaded:
        _direct_load(engine, base, bad)()
    line = str(loaded.value)
    assert "\n" not in line and str(bad) in line
    args = ["restore", str(photo), "--engine", engine, "--model", str(base), "--adapter", str(bad), "--steps", "1"]
    args += ["--device", "cpu", "-o", str(tmp_path / "out.png")]
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    run = CliRunner().invoke(app, args)
    assert dry.exit_code == run.exit_code == loaded.value.exit_code == 2, (dry.output, run.output)
    assert line in dry.stderr and line in run.stderr, (line, dry.stderr, run.stderr)
    assert "Traceback" not in dry.output + run.output and not (tmp_path / "out.png").exists()
