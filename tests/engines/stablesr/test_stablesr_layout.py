"""StableSR's official checkpoint layouts map strictly onto diffusers + studio's StableSR modules.

The published files cannot be downloaded here: tests/fixtures/stablesr_keys_*.json list each key and shape
(derived from the reference code, see tests/fixtures/make_stablesr_keys.py). Full-size modules are built on
the meta device (no memory); the toy-size file is rebuilt with the script's deterministic values and must
reproduce the reference implementation's outputs.
"""

from __future__ import annotations

import json
import zlib

import pytest
import torch
from support import FIXTURES, REPO

from studio.engines.stablesr.keys import (
    StableSRKeyMap,
    layout_of,
    map_state_dict,
)
from studio.engines.stablesr.networks import (
    CFWFusion,
    EncoderConfig,
    StableSRAdapter,
)
from studio.errors import UsageError

FIXTURES = FIXTURES
CONFIGS = REPO / "configs" / "stablesr"
TINY_ENCODER = EncoderConfig(
    channels=32, channel_mult=(1, 2), layers_per_level=1, attention_levels=(0,), heads=4, out_channels=32
)


def _fixture(name: str) -> dict[str, list[int]]:
    return json.loads((FIXTURES / f"stablesr_keys_{name}.json").read_text())["keys"]


def _official_value(key: str, shape: list[int]) -> torch.Tensor:
    """Same values as make_stablesr_keys.official_value (seeded by the key's CRC32)."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    return torch.randn(shape, generator=generator) * (0.2 if len(shape) > 1 else 0.05)


@pytest.fixture(scope="module")
def full_size() -> dict[str, torch.nn.Module]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads((CONFIGS / "unet.json").read_text()))
        vae = AutoencoderKL.from_config(json.loads((CONFIGS / "vae.json").read_text()))
        text = CLIPTextModel(CLIPTextConfig(**json.loads((CONFIGS / "text_encoder.json").read_text())))
        cfw_vae = AutoencoderKL.from_config(json.loads((CONFIGS / "vae.json").read_text()))
        return {
            "unet": unet,
            "vae": vae,
            "text_encoder": text,
            "adapter": StableSRAdapter.for_unet(unet),
            "cfw_vae": cfw_vae,
            "cfw": CFWFusion.for_vae(cfw_vae),
        }


@pytest.mark.parametrize(
    ("name", "layout", "targets"),
    [
        ("512", "full", ("unet", "adapter", "vae", "text_encoder")),
        ("768v", "full", ("unet", "adapter", "vae", "text_encoder")),
        ("webui", "adapter", ("adapter",)),
        ("cfw", "cfw", ("cfw_vae", "cfw")),
    ],
)
def test_published_layouts_fill_full_size_modules_exactly(full_size, name, layout, targets) -> None:
    keys = _fixture(name)
    assert layout_of(keys) == layout
    key_map = StableSRKeyMap(full_size["unet"], EncoderConfig(), full_size["vae"], full_size["text_encoder"])
    state = {key: torch.empty(shape, device="meta") for key, shape in keys.items()}
    mapped = map_state_dict(state, {t: full_size[t] for t in targets}, key_map, f"{name}.ckpt")
    for target in targets:  # every parameter filled (map_state_dict also raises otherwise)
        expected = {k for k in full_size[target].state_dict() if not k.endswith("position_ids")}
        assert set(mapped[target]) == expected
    if layout == "full":
        assert len(full_size["adapter"].spades) == 22  # 8 input, 2 middle, 12 output ResBlocks


def test_a_misshapen_or_missing_or_foreign_key_is_one_precise_line(full_size) -> None:
    key_map = StableSRKeyMap(full_size["unet"], EncoderConfig(), full_size["vae"], full_size["text_encoder"])
    keys = _fixture("webui")
    state = {key: torch.empty(shape, device="meta") for key, shape in keys.items()}
    modules = {"adapter": full_size["adapter"]}
    bad = "model.diffusion_model.output_blocks.5.0.spade.mlp_gamma.weight"
    with pytest.raises(UsageError, match=rf"webui.ckpt: key '{bad}' has shape \[1280, 64, 3, 3\], which does not fit"):
        map_state_dict(state | {bad: torch.empty(1280, 64, 3, 3, device="meta")}, modules, key_map, "webui.ckpt")
    missing = "structcond_stage_model.fea_tran.3.out_layers.3.bias"
    with pytest.raises(UsageError, match="no key fills adapter.encoder.feature_heads.3.conv2.bias"):
        map_state_dict({k: v for k, v in state.items() if k != missing}, modules, key_map, "webui.ckpt")
    with pytest.raises(UsageError, match="key 'model.diffusion_model.input_blocks.1.0.lora.weight' is not part"):
        map_state_dict(
            state | {"model.diffusion_model.input_blocks.1.0.lora.weight": torch.empty(1, device="meta")},
            modules,
            key_map,
            "webui.ckpt",
        )
    with pytest.raises(UsageError, match="not a StableSR checkpoint"):
        layout_of(["conv_in.weight"])


def test_toy_official_file_loads_strictly_and_reproduces_the_reference_outputs() -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import load_file

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        norm_num_groups=32,
    ).eval()
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    ).eval()
    adapter, cfw = StableSRAdapter.for_unet(unet, TINY_ENCODER).eval(), CFWFusion.for_vae(vae).eval()
    official = {key: _official_value(key, shape) for key, shape in _fixture("tiny").items()}
    key_map = StableSRKeyMap(unet, TINY_ENCODER, vae)
    full = {k: v for k, v in official.items() if k.startswith(("model.", "structcond_stage_model."))}
    for name, state in map_state_dict(full, {"unet": unet, "adapter": adapter}, key_map, "tiny").items():
        {"unet": unet, "adapter": adapter}[name].load_state_dict(state, strict=True)
    cfw_state = {k: v for k, v in official.items() if k not in full}
    for name, state in map_state_dict(cfw_state, {"cfw_vae": vae, "cfw": cfw}, key_map, "tiny-cfw").items():
        {"cfw_vae": vae, "cfw": cfw}[name].load_state_dict(state, strict=True)

    ref = load_file(str(FIXTURES / "stablesr_tiny_reference.safetensors"))
    t = torch.tensor([500])
    adapter.attach(unet)
    with torch.no_grad():
        with adapter.conditioned(ref["latent"], t) as features:
            eps = unet(ref["x_t"], t, encoder_hidden_states=ref["context"]).sample
        for size, feature in features.items():
            torch.testing.assert_close(feature, ref[f"feature_{size[1]}"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(eps, ref["eps"], atol=1e-4, rtol=1e-4)
        cfw.attach(vae)
        cfw.weight = 0.5
        with cfw.capturing():
            moments = vae.quant_conv(vae.encoder(ref["image"]))
            decoded = vae.decoder(vae.post_quant_conv(ref["z"]))
        torch.testing.assert_close(moments, ref["moments"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(decoded, ref["decoded_w0.5"], atol=1e-4, rtol=1e-4)
        adapter.scale = 0.0  # the modulation off: the plain UNet
        with adapter.conditioned(ref["latent"], t):
            plain = unet(ref["x_t"], t, encoder_hidden_states=ref["context"]).sample
        adapter.detach()
        torch.testing.assert_close(plain, unet(ref["x_t"], t, encoder_hidden_states=ref["context"]).sample)
