"""Check studio's S3Diff against the authors' code: same files, same input, same seed, same output.

Builds a toy SD base folder (studio.testing.tiny_sd's widths, SD-Turbo's scheduler settings), lets the
authors' own `S3Diff` class (src/s3diff_tile.py) build its LoRA'd UNet/VAE and guidance MLPs on it, draws
every one of their parameters at random, and saves the weights file with *their* `save_model`; their
`DEResNet` (src/de_net.py, toy widths) is saved as de_net.pth. The reference output follows their
`src/inference_s3diff.py` per image: estimate the degradation on the input, bilinear upscale, [-1, 1],
reflect-pad to a multiple of 64, `net_sr(...)` with their fixed prompts, crop, back to [0, 1]. studio
restores the same input with `--engine onestep` on those two files (colour fix off: the runner applies it
after the engine). Prints the largest differences as JSON. Needs a checkout of ArcticHare105/S3Diff:

    python scripts/check_s3diff_parity.py /path/to/S3Diff

The authors' code runs unchanged except for a CUDA -> CPU shim: their `.cuda()` calls and "cuda" device
strings are mapped to the CPU when their two modules are loaded, and basicsr's package import (which
pulls in its training stack) is replaced by its `arch_util` module alone.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TURBO_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "trailing",
}
"""SD-Turbo's scheduler settings (an EulerDiscreteScheduler config that the authors read as DDPM)."""
RANKS = (4, 4)
ESTIMATOR_WIDTHS = [8, 8, 8, 16]
SEED = 7
SCALE = 2


def _module_from_source(name: str, path: Path, cpu: bool) -> types.ModuleType:
    source = path.read_text()
    if cpu:
        source = source.replace(".cuda()", "").replace('"cuda"', '"cpu"')
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def import_reference(root: Path) -> tuple[Any, Any]:
    """(their S3Diff class, their DEResNet class), with the CPU shim."""
    sys.path[:0] = [str(root / "src"), str(root)]
    stubs = {
        "basicsr": types.ModuleType("basicsr"),
        "basicsr.archs": types.ModuleType("basicsr.archs"),
        "basicsr.ops": types.ModuleType("basicsr.ops"),
        "basicsr.ops.dcn": types.ModuleType("basicsr.ops.dcn"),
        "basicsr.utils": types.ModuleType("basicsr.utils"),
    }
    stubs["basicsr.ops.dcn"].ModulatedDeformConvPack = object  # deformable convs: not used by S3Diff
    stubs["basicsr.ops.dcn"].modulated_deform_conv = None
    stubs["basicsr.utils"].get_root_logger = None
    sys.modules.update(stubs)
    spec = importlib.util.spec_from_file_location("basicsr.archs.arch_util", root / "basicsr/archs/arch_util.py")
    arch_util = importlib.util.module_from_spec(spec)
    sys.modules["basicsr.archs.arch_util"] = arch_util
    spec.loader.exec_module(arch_util)
    _module_from_source("model", root / "src" / "model.py", cpu=True)
    s3diff_tile = _module_from_source("s3diff_tile", root / "src" / "s3diff_tile.py", cpu=True)
    de_net = _module_from_source("de_net", root / "src" / "de_net.py", cpu=False)
    return s3diff_tile.S3Diff, de_net.DEResNet


def write_base(folder: Path) -> Path:
    """A toy StableDiffusionPipeline folder with SD-Turbo's scheduler settings."""
    import diffusers
    import torch

    from studio.testing.tiny_sd import TINY_SD_UNET_CONFIG, TINY_SD_VAE_CONFIG, tiny_text_encoder, tiny_tokenizer

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    pipe = diffusers.StableDiffusionPipeline(
        vae=diffusers.AutoencoderKL.from_config(TINY_SD_VAE_CONFIG),
        text_encoder=tiny_text_encoder(len(tokenizer), TINY_SD_UNET_CONFIG["cross_attention_dim"]),
        tokenizer=tokenizer,
        unet=diffusers.UNet2DConditionModel.from_config(TINY_SD_UNET_CONFIG),
        scheduler=diffusers.EulerDiscreteScheduler.from_config(TURBO_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def reference_files(s3diff_cls: Any, de_net_cls: Any, base: Path, folder: Path) -> tuple[Any, Any, Path]:
    """Their networks with every parameter random, saved by their own code: (net_sr, net_de, weights file)."""
    import torch

    args = types.SimpleNamespace(
        latent_tiled_size=96, latent_tiled_overlap=32, vae_encoder_tiled_size=1024, vae_decoder_tiled_size=224
    )
    net_sr = s3diff_cls(
        sd_path=str(base), pretrained_path=None, lora_rank_unet=RANKS[0], lora_rank_vae=RANKS[1], args=args
    )
    net_de = de_net_cls(num_in_ch=3, num_degradation=2, num_feats=ESTIMATOR_WIDTHS)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        trained = [p for n, p in net_sr.unet.named_parameters() if "lora" in n or "conv_in" in n]
        trained += [p for n, p in net_sr.vae.named_parameters() if "lora" in n]
        for name in ("de_mlp", "block_mlp", "fuse_mlp", "block_embeddings"):
            trained += [p for part in ("unet", "vae") for p in getattr(net_sr, f"{part}_{name}").parameters()]
        trained.append(net_sr.W)
        for param in trained:
            scale = 1.0 if param is net_sr.W else 0.05
            param.copy_(torch.randn(param.shape, generator=generator) * scale)
        for param in net_de.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    net_sr.set_eval()
    net_de.eval()
    weights = folder / "s3diff.pkl"
    net_sr.save_model(str(weights))
    torch.save(net_de.state_dict(), folder / "de_net.pth")
    return net_sr, net_de, weights


def reference_output(net_sr: Any, net_de: Any, lq: Any, prompts: tuple[str, str]) -> tuple[Any, Any]:
    """Their per-image steps (src/inference_s3diff.py) -> ((H, W, 3) in [0, 1] before quantisation, scores)."""
    import math

    import torch
    import torch.nn.functional as F

    im_lr = torch.from_numpy(lq.transpose(2, 0, 1).copy())[None]
    height, width = im_lr.shape[2] * SCALE, im_lr.shape[3] * SCALE
    resized = F.interpolate(im_lr, size=(height, width), mode="bilinear", align_corners=False)
    signed = torch.clamp(resized * 2 - 1.0, -1.0, 1.0)
    pad = (0, math.ceil(width / 64) * 64 - width, 0, math.ceil(height / 64) * 64 - height)
    signed = F.pad(signed, pad=pad, mode="reflect")
    with torch.no_grad():
        scores = net_de(im_lr)
        torch.manual_seed(SEED)  # their posterior sample draws from the global generator
        out = net_sr(signed, scores, pos_prompt=[prompts[0]], neg_prompt=[prompts[1]])
    return (out[:, :, :height, :width] * 0.5 + 0.5)[0].permute(1, 2, 0).numpy(), scores


def studio_output(base: Path, weights: Path, lq: Any) -> tuple[Any, Any]:
    """studio's onestep engine on the same files (de_net.pth found next to the weights file)."""
    from studio.settings import Settings, apply_layer

    OneStepEngine = importlib.import_module("studio.engines.onestep.engine").OneStepEngine
    values = {"engine": "onestep", "model": str(base), "adapter": str(weights), "seed": SEED, "tile": 0}
    engine = OneStepEngine(apply_layer(Settings(), values, "cli"))
    result = engine.restore(lq, float(SCALE))
    return result.image, engine._load().model.scores


def main(root: Path) -> None:
    import numpy as np

    from studio.engines.onestep.s3diff import NEGATIVE_PROMPT, POSITIVE_PROMPT

    s3diff_cls, de_net_cls = import_reference(root)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = write_base(folder / "base")
        net_sr, net_de, weights = reference_files(s3diff_cls, de_net_cls, base, folder)
        lq = np.random.default_rng(0).random((20, 28, 3), dtype=np.float32)
        expected, ref_scores = reference_output(net_sr, net_de, lq, (POSITIVE_PROMPT, NEGATIVE_PROMPT))
        got, scores = studio_output(base, weights, lq)
    print(
        json.dumps(
            {
                "input": list(lq.shape),
                "output": list(got.shape),
                "degradation_scores_reference": [round(float(s), 6) for s in ref_scores[0]],
                "degradation_scores_studio": list(scores),
                "output_max_abs_diff": float(np.abs(got - expected).max()),
                "output_mean_abs_diff": float(np.abs(got - expected).mean()),
                "output_std": float(expected.std()),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
