"""Write tests/fixtures/supir_keys.json and supir_tiny_keys.json from SUPIR's own module tree.

The published SUPIR-v0Q / v0F checkpoints cannot be downloaded on the build machines, so their layout
(key and shape of every tensor) is derived from the reference code (Fanghua-Yu/SUPIR): its GLVControl
adaptor, LightGLVUNet's `project_modules` connectors and the sgm VAE Encoder copied as the denoise
encoder, built on torch's meta device (no weights, no memory) from options/SUPIR_v0.yaml's parameters.
Those three are what SUPIRModel adds on top of SDXL and what the checkpoint holds (1.33 B parameters:
5.33 GB in fp32, the published file size).

The tiny fixture is the same code at a toy width (3 levels of 32/64/64 channels), for a checkpoint in the
official layout small enough to build in a test.

Usage (needs a SUPIR checkout; its sgm package imports only torch and einops once the package
__init__ files that pull in training code are emptied, and omegaconf is stubbed):
    python scripts/derive_supir_keys.py /path/to/SUPIR
"""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
HEADER = (
    "Derived by scripts/derive_supir_keys.py from Fanghua-Yu/SUPIR (commit bda91af): GLVControl "
    "(model.control_model), LightGLVUNet.project_modules (model.diffusion_model.project_modules) and the "
    "sgm Encoder copied as first_stage_model.denoise_encoder, built on the meta device from "
    "options/SUPIR_v0.yaml{tiny}. Keys and shapes as SUPIR-v0Q/v0F.ckpt's state_dict holds them."
)

FULL = {
    "model_channels": 320,
    "channel_mult": [1, 2, 4],
    "transformer_depth": [1, 2, 10],
    "context_dim": 2048,
    "adm_in_channels": 2816,
    "num_head_channels": 64,
    "vae_ch": 128,
    "vae_ch_mult": [1, 2, 4, 4],
}
TINY = {
    "model_channels": 32,
    "channel_mult": [1, 2, 2],
    "transformer_depth": [1, 1, 1],
    "context_dim": 64,
    "adm_in_channels": 80,
    "num_head_channels": 16,
    "vae_ch": 32,
    "vae_ch_mult": [1, 2],
}


def import_reference(root: Path) -> types.ModuleType:
    """SUPIR's modules without its training imports (kornia, open_clip, lightning, omegaconf)."""
    stub = types.ModuleType("omegaconf")
    stub.ListConfig, stub.DictConfig = list, dict
    listconfig = types.ModuleType("omegaconf.listconfig")
    listconfig.ListConfig = list
    sys.modules.update({"omegaconf": stub, "omegaconf.listconfig": listconfig})
    for package in ("sgm", "sgm.modules", "sgm.modules.diffusionmodules"):
        module = types.ModuleType(package)
        module.__path__ = [str(root / package.replace(".", "/"))]
        sys.modules[package] = module
    sys.path.insert(0, str(root))
    import SUPIR.modules.SUPIR_v0 as reference

    return reference


def layout(reference: types.ModuleType, p: dict, tiny: bool) -> dict[str, list[int]]:
    """key -> shape of the three parts, with the checkpoint's prefixes."""
    import torch
    from sgm.modules.diffusionmodules.model import Encoder

    unet_args = dict(
        adm_in_channels=p["adm_in_channels"],
        num_classes="sequential",
        in_channels=4,
        out_channels=4,
        model_channels=p["model_channels"],
        attention_resolutions=[4, 2],
        num_res_blocks=2,
        channel_mult=p["channel_mult"],
        num_head_channels=p["num_head_channels"],
        use_spatial_transformer=True,
        use_linear_in_transformer=True,
        transformer_depth=p["transformer_depth"],
        context_dim=p["context_dim"],
        legacy=False,
    )
    keys: dict[str, list[int]] = {}
    with torch.device("meta"):
        control = reference.GLVControl(**unet_args, spatial_transformer_attn_type="softmax", input_upscale=1)
        keys.update({f"model.control_model.{k}": list(v.shape) for k, v in control.state_dict().items()})
        connectors = (
            connectors_like(reference, p)
            if tiny
            else reference.LightGLVUNet(
                mode="XL-base", project_type="ZeroSFT", project_channel_scale=2, **unet_args
            ).project_modules
        )
        keys.update(
            {f"model.diffusion_model.project_modules.{k}": list(v.shape) for k, v in connectors.state_dict().items()}
        )
        encoder = Encoder(
            double_z=True,
            z_channels=4,
            resolution=256,
            in_channels=3,
            out_ch=3,
            ch=p["vae_ch"],
            ch_mult=p["vae_ch_mult"],
            num_res_blocks=2,
            attn_resolutions=[],
            dropout=0.0,
        )
        keys.update({f"first_stage_model.denoise_encoder.{k}": list(v.shape) for k, v in encoder.state_dict().items()})
    return keys


def connectors_like(reference: types.ModuleType, p: dict) -> object:
    """LightGLVUNet's XL-base connector list (its __init__ hard-codes SDXL's widths) at the tiny widths."""
    import torch

    c0, c1, c2 = (p["model_channels"] * m for m in p["channel_mult"])
    cond = [c0] * 4 + [c1] * 3 + [c2] * 3
    concat = [c0] * 2 + [c1] * 3 + [c2] * 4 + [0]
    modules = torch.nn.ModuleList(reference.ZeroSFT(cond[i], cond[i], concat_channels=concat[i]) for i in range(10))
    for i in (6, 3):
        modules.insert(i, reference.ZeroCrossAttn(cond[i], concat[i]))
    return modules


def main(root: Path) -> None:
    reference = import_reference(root)
    for name, params, tiny in (("supir_keys.json", FULL, False), ("supir_tiny_keys.json", TINY, True)):
        keys = layout(reference, params, tiny)
        count = sum(math.prod(shape) for shape in keys.values())
        header = HEADER.format(tiny=" at the toy widths " + json.dumps(TINY) if tiny else "")
        if not tiny:
            header += (
                f" {count:,} parameters = {4 * count:,} bytes in fp32; the published files are 5,329,810,432"
                " bytes each, the difference being the pickle's per-tensor overhead."
            )
        lines = ",\n".join(f"  {json.dumps(key)}: {json.dumps(shape)}" for key, shape in keys.items())
        text = f'{{"header": {json.dumps(header)},\n"parameters": {count},\n"keys": {{\n{lines}\n}}}}\n'
        (FIXTURES / name).write_text(text)
        print(f"{name}: {len(keys)} keys, {count:,} parameters")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
