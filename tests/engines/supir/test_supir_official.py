"""SUPIR's official checkpoint layout: the key fixtures (derived from SUPIR's code, see their headers) map
strictly onto studio's modules; a tiny checkpoint in that layout loads and steers a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support import FIXTURES

from studio.engines.supir import networks as official
from studio.engines.supir.keys import is_official_checkpoint
from studio.errors import UsageError
from studio.testing import tiny_sdxl as random_sdxl

FIXTURES = FIXTURES


def fixture_keys(name: str) -> dict[str, list[int]]:
    data = json.loads((FIXTURES / name).read_text())
    assert "Derived by scripts/derive_supir_keys.py" in data["header"]
    return data["keys"]


def configs(unet_config: dict, vae_config: dict) -> tuple[object, object]:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel.from_config(unet_config).config, AutoencoderKL.from_config(vae_config).config


def test_full_size_layout_maps_exactly_onto_studio_modules() -> None:
    """All 1034 tensors of SUPIR-v0Q/v0F (1.33 B parameters) land on a module key of the same shape."""
    unet_config, vae_config = configs(random_sdxl.SDXL_UNET_CONFIG, random_sdxl.SDXL_VAE_CONFIG)
    keys = fixture_keys("supir_keys.json")
    state = {key: torch.empty(shape, device="meta") for key, shape in keys.items()}
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.empty(320, 4, 3, 3, device="meta")  # SDXL's own
    mapped = official.to_studio_keys(state, unet_config, vae_config)
    adapter = official.SupirAdapter(unet_config, vae_config)
    expected = adapter.state_dict()
    assert len(keys) == 1034 and set(mapped) == set(expected)
    assert all(tuple(mapped[k].shape) == tuple(v.shape) for k, v in expected.items())
    official.load_strict(adapter, mapped, "SUPIR-v0Q.ckpt")


@pytest.fixture(scope="module")
def tiny_official(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tiny SDXL base folder, tiny SUPIR checkpoint in the official layout with random weights)."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("tiny_supir")
    pipe = random_sdxl.build_base(random_sdxl.TINY_UNET_CONFIG)
    random_sdxl.save_base(pipe, root / "base")
    generator = torch.Generator().manual_seed(0)
    state = {
        key: torch.randn(shape, generator=generator) * 0.02
        for key, shape in fixture_keys("supir_tiny_keys.json").items()
    }
    state["model.diffusion_model.out.2.weight"] = torch.zeros(4, 32, 3, 3)  # SDXL's own keys are ignored
    save_file(state, root / "SUPIR-tiny.safetensors")
    return root / "base", root / "SUPIR-tiny.safetensors"


def test_tiny_official_checkpoint_loads_strictly_and_runs(
    tiny_official: tuple[Path, Path], astronaut: np.ndarray
) -> None:
    from studio.engines.supir.engine import SupirEngine
    from studio.ops.resize import resize
    from studio.settings import resolve

    base, checkpoint = tiny_official
    from safetensors.torch import load_file

    assert is_official_checkpoint(load_file(checkpoint))
    engine = SupirEngine(
        resolve({"model": str(base), "adapter": str(checkpoint), "min_side": 0, "steps": 1, "seed": 2, "strength": 0.2})
    )
    image = resize(astronaut.astype(np.float32) / 255.0, 12, 10)
    result = engine.restore(image, 2.0)
    out = result.image
    assert out.shape == (24, 20, 3) and np.isfinite(out).all()
    recipe = engine._load().recipe
    assert recipe.components.adaptor is not None and recipe.components.controlnets == []
    assert recipe.stage1_image is not None and result.provenance["stage1"] == "lanczos"


def test_wrong_key_or_shape_gives_one_line(tiny_official: tuple[Path, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    unet_config, vae_config = configs(random_sdxl.TINY_UNET_CONFIG, random_sdxl.TINY_VAE_CONFIG)
    state = load_file(tiny_official[1])
    renamed = dict(state)
    renamed["model.diffusion_model.project_modules.0.zero_mul.weightx"] = renamed.pop(
        "model.diffusion_model.project_modules.0.zero_mul.weight"
    )
    with pytest.raises(UsageError, match=r"^\S+renamed.safetensors: missing SUPIR key for 'connectors.0.zero_mul"):
        official.load_official(renamed, str(tmp_path / "renamed.safetensors"), unet_config, vae_config, torch.float32)
    reshaped = dict(state)
    reshaped["model.control_model.input_hint_block.0.weight"] = torch.zeros(32, 4, 1, 1)
    with pytest.raises(UsageError, match=r"'adaptor.hint.weight' has shape \(32, 4, 1, 1\), expected \(32, 4, 3, 3\)"):
        official.load_official(reshaped, "reshaped.safetensors", unet_config, vae_config, torch.float32)
    with pytest.raises(UsageError, match="no 'first_stage_model.denoise_encoder"):
        official.to_studio_keys(
            {k: v for k, v in state.items() if not k.startswith("first_stage")}, unet_config, vae_config
        )
