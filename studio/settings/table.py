"""The table of restore settings: every setting declared once, with its default, help, range and readers.

Field names are the `studio restore` option names with '-' -> '_'. To add a setting, add one
`setting(...)` line here and the code that uses it: the option, its check, its place in the
engines' setting lists, the shipped defaults file and the reproduce command follow from it.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from functools import partial
from typing import Any

from studio.errors import ConfigError
from studio.settings.spec import check_value, setting, spec_of

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own decompression-bomb limit (2x its warning threshold)
DEFAULT_MAX_OUTPUT_PIXELS = 4 * DEFAULT_MAX_PIXELS  # ~716 MP: its float32 RGB alone is 8.6 GB

PANEL_DIFFUSION = "Diffusion"
PANEL_FACES = "Faces"
PANEL_OUTPUT = "Output"
PANEL_REMOTE = "Remote"
"""Help panels of `studio restore --help` (None: the main Options panel)."""

_sampling = partial(setting, panel=PANEL_DIFFUSION, group="sampling")
_adapter = partial(setting, panel=PANEL_DIFFUSION, group="adapter")
_stablesr = partial(setting, panel=PANEL_DIFFUSION, group="stablesr")
_supir = partial(setting, panel=PANEL_DIFFUSION, group="supir")
_onestep = partial(setting, panel=PANEL_DIFFUSION, group="onestep")
_faces = partial(setting, panel=PANEL_FACES)
_output = partial(setting, panel=PANEL_OUTPUT)
_remote = partial(setting, panel=PANEL_REMOTE, reproduce=False)  # where a job runs is not how it is made
"""Settings shown in one help panel (and read by one group of engines: see SettingSpec.group)."""
_UNIT = {"low": 0.0, "high": 1.0, "expect": "a value from 0 to 1"}
_SCALE_0_2 = {"low": 0.0, "high": 2.0, "expect": "a value from 0 to 2"}


@dataclass
class Settings:
    """Everything one restore job needs, each field declared once (see studio/settings/spec.py)."""

    engine: str = setting(  # checked against the engine registry by the runner
        "auto",
        "auto or {engines} (auto: a diffusion engine with a GPU and its weights, else fast; "
        "studio engines says which run here).",
        short=("-e",),
    )
    model: str | None = setting(
        None,
        "Weights name, file, folder or hub id; give it again for an ensemble (fast engine).",
        short=("-m",),
        generated=False,
        names_file=True,
    )
    ensemble: list[str] | None = setting(  # several --model: all of them, blended (model holds the first)
        None, "Every --model of an ensemble.", flag="--model", generated=False, names_file=True
    )
    blend: list[float] | None = setting(  # the ensemble's weights, normalised to sum 1
        None,
        "Ensemble weights, one per --model, e.g. 0.6,0.4 (averaged in linear light; normalised to sum 1).",
        shown_default="equal",
        generated=False,
    )
    task: str = setting(
        "sr",
        "sr (enlarge), jpeg (remove JPEG artefacts) or denoise; jpeg/denoise clean at the original size with "
        "SwinIR first.",
        choices=("sr", "jpeg", "denoise"),
    )
    scale: float = setting(
        4.0, "Output scale, fractional allowed.", short=("-s",), low=0.25, high=16, expect="a factor from 0.25 to 16"
    )
    preset: str | None = setting(None, "Prompt preset (studio presets list).", short=("-p",), reproduce=False)
    prompt: str = _sampling("", "What the image shows; steers diffusion.")
    negative_prompt: str = _sampling("", "What to avoid.")
    variables: dict[str, str] = setting(
        help="Preset variable KEY=VALUE (repeatable).",
        factory=dict,
        flag="--var",
        panel=PANEL_DIFFUSION,
        generated=False,
        reproduce=False,
    )
    seed: int | None = setting(
        None,
        "Random seed (recorded in the output).",
        panel=PANEL_DIFFUSION,
        low=0,
        high=2**63 - 1,
        expect="a whole number from 0",
    )
    # 25 steps: the guide's suggestion for the SD x4 upscaler (diffusers' own default is 75); low guidance
    # keeps the upscaler faithful. sd-x4 derives noise_level from strength (0.5 -> 20) unless a layer at
    # least as high as strength's sets it (20-50 is the useful range).
    steps: int = _sampling(25, "Denoising steps.", low=1, high=1000)
    guidance: float = _sampling(4.0, "Classifier-free guidance.", low=0, expect="0 or more (1 turns guidance off)")
    noise_level: int = _sampling(
        20, "SD x4 noise level 0-350.", shown_default="20 (or from --strength)", low=0, high=350
    )
    fidelity: float | None = setting(
        None,
        "0-1: blend the result toward a Lanczos upscale of the input (1 = Lanczos).",
        shown_default="the result as is",
        **_UNIT,
    )
    strength: float = _sampling(
        0.5, "0-1: how much a diffusion engine may re-invent (sd-x4: sets the noise level).", **_UNIT
    )
    scheduler: str | None = _sampling(
        None, "ddim, dpm++, euler, euler-a, pndm, ddpm, unipc; supir: edm-euler, dpm++-2m-karras."
    )
    # Adapter-guided diffusion engines (stablesr, supir). None: derived from --fidelity or the engine default.
    adapter: str | None = _adapter(
        None,
        "ControlNet folder or hub id, or an official StableSR/SUPIR checkpoint (detected by its keys).",
        names_file=True,
    )
    adapter_scale: float | None = _adapter(
        None,
        "0-2: ControlNet conditioning / SPADE modulation scale.",
        shown_default="1 (or from --fidelity)",
        **_SCALE_0_2,
    )
    denoise: float | None = _stablesr(
        None, "0-1: fraction of the schedule run from the noised stage-1 latent (1 = from the last timestep).", **_UNIT
    )
    pull: float | None = _stablesr(
        None, "0-1: per-step pull of the predicted clean latent toward the stage-1 latent (0 = off).", **_UNIT
    )
    cfw: float | None = _stablesr(
        None, "0-1: StableSR CFW weight (0 = plain decoder, 1 = follow the input); needs the CFW weights.", **_UNIT
    )
    stage1: str | None = _adapter(
        None,
        "fast, lanczos, none: how the input reaches the output size before it conditions the model.",
        choices=("fast", "lanczos", "none"),
    )
    # SUPIR's sampler. None: derived from --strength (see engines/supir/engine.py).
    restore_tau: float | None = _supir(
        None,
        "SUPIR restoration guidance exponent (0 = follow the input, higher = freer; negative = off).",
        shown_default="from --strength",
    )
    cfg_start: float | None = _supir(
        None,
        "CFG at the highest noise, linear to --guidance at the lowest (supir).",
        shown_default="from --strength",
        low=0,
    )
    adapter_scale_start: float | None = _supir(
        None,
        "Control scale at the highest noise, linear to --adapter-scale (supir).",
        shown_default="constant",
        **_SCALE_0_2,
    )
    churn: float = _supir(5.0, "EDM churn: noise re-added per step (supir).", low=0)
    s_noise: float = _supir(1.003, "EDM churn noise scale (supir).", low=0)
    dtype: str | None = _supir(
        None,
        "fp16, bf16, fp32: diffusion precision (supir; the VAE runs bf16/fp32).",
        choices=("fp16", "bf16", "fp32"),
        shown_default="fp16 on CUDA, fp32 on CPU",
    )
    min_side: int = _supir(
        1024,
        "Diffuse with the short side at least this many pixels, then resize to the output (supir; 0 = at the "
        "output size).",
        low=0,
        high=4096,
        expect="0 (off) to 4096 pixels",
    )
    caption: bool = _supir(False, "Fill {caption} in the prompt from an image captioner (supir, onestep).")
    caption_model: str | None = _supir(
        None, "transformers image-to-text model for --caption (hub id or folder).", names_file=True
    )
    fuse_lora: bool = _onestep(
        True, "Merge the LoRA into the base weights once at load (onestep: faster; same output within rounding)."
    )
    color_fix: str | None = setting(
        None,
        "none, wavelet, wavelet-dwt, adain, histogram, lab.",
        choices=("none", "wavelet", "wavelet-dwt", "adain", "histogram", "lab"),
        shown_default="wavelet for diffusion, else none",
    )
    faces: str = _faces(
        "none", "none, gfpgan, codeformer, restoreformer.", choices=("none", "gfpgan", "codeformer", "restoreformer")
    )
    face_model: str | None = _faces(None, "Face weights name or file.", names_file=True)
    face_fidelity: float = _faces(0.5, "0-1: higher keeps more of the original face.", **_UNIT)
    only_center_face: bool = _faces(False, "Restore only the most central face.")
    max_faces: int | None = _faces(None, "Restore at most this many (largest first).", low=1)
    min_face_size: int = _faces(24, "Leave faces alone whose box's shorter side is under this many pixels.")
    protect_faces: bool = _faces(  # on by default: an SR network melts small faces (issue 23)
        True,
        "When faces are found and no face model restores them, keep them close to a Lanczos upscale (nothing "
        "invented); an explicit --faces none leaves them to the engine.",
    )
    tile: int | None = setting(
        None,
        "Tile size in pixels of the image the model reads (the input; for stablesr and supir the stage-1 "
        "image); 0 = off.",
        shown_default="from free memory",
        low=32,
        off=0,
        expect="0 (off) or at least 32 pixels",
    )
    tile_overlap: int = setting(  # 16 leaves seams of 2-3/255 with Real-ESRGAN, 32 keeps them under 0.3/255
        32, "Pixels (same unit as --tile) neighbouring tiles share.", low=0, expect="0 or more pixels"
    )
    format: str = _output(
        "png",
        "png, jpg, webp (lossless), tiff, avif, jxl (JPEG XL; lossless at --quality 100).",
        choices=("png", "jpg", "webp", "tiff", "avif", "jxl"),
        shown_default="png, or -o's extension",
        short=("-f",),
    )
    quality: int = _output(95, "JPEG, AVIF and JPEG XL quality (95+ unless --force-jpeg).", low=1, high=100)
    dpi: float | None = _output(
        None,
        "Print resolution of the output.",
        shown_default="the input's, scaled to keep the print size",
        low=1,
        high=100_000,
        expect="1 to 100000 pixels per inch",
    )
    device: str = setting("auto", "auto, cpu, cuda, cuda:N, mps.")
    threads: int | None = setting(None, "CPU threads for the fast engine.", shown_default="every physical core", low=1)
    offload: str = setting(
        "encoders",
        "encoders (text encoders in RAM between prompts), none, model, sequential (diffusion on small GPUs).",
        choices=("encoders", "none", "model", "sequential"),
        group="sampling",
    )
    fallback: str | None = setting(
        None,
        "Engine to use when the chosen one cannot run: fast, classical, none.",
        choices=("none", "fast", "classical"),
    )
    alpha: str = setting("bicubic", "Alpha upscaling: bicubic or model.", choices=("bicubic", "model"))
    max_pixels: int = setting(
        DEFAULT_MAX_PIXELS, "Refuse inputs above this many pixels.", low=256, expect="at least 256"
    )
    max_output_pixels: int = setting(
        DEFAULT_MAX_OUTPUT_PIXELS,
        "Refuse inputs whose output (input x scale) would exceed this many pixels, before any work.",
        low=256,
        expect="at least 256",
    )
    force_jpeg: bool = _output(False, "Allow JPEG, AVIF and JPEG XL quality below 95.")
    sidecar: bool = _output(False, "Also write OUTPUT.json with the provenance.", reproduce=False)
    remote: str | None = _remote(
        None,
        "Run every job elsewhere: a `studio serve` URL (http://gpu-box:8765), replicate:OWNER/MODEL[:VERSION] "
        "or runpod:ENDPOINT_ID; results are written here.",
        shown_default="this machine",
    )
    remote_token: str | None = _remote(
        None,
        "Token for --remote; never printed.",
        shown_default="$STUDIO_REMOTE_TOKEN, $REPLICATE_API_TOKEN or $RUNPOD_API_KEY",
        secret=True,
    )
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # where each value came from

    def to_dict(self) -> dict[str, Any]:
        """Plain values (no `sources`), for provenance and reports; a credential shows only that it is set."""
        return {item.name: _shown(item, getattr(self, item.name)) for item in setting_fields()}

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")

    def validate(self) -> None:
        """Reject impossible values with a message naming the option, the value and what is allowed."""
        for item in setting_fields():
            check_value(item, getattr(self, item.name))
        self._validate_ensemble()

    def _validate_ensemble(self) -> None:
        if self.ensemble is not None and len(self.ensemble) < 2:
            raise ConfigError(f"an ensemble needs two or more models, got {self.ensemble}")
        if self.blend is None:
            return
        if self.ensemble is None:
            raise ConfigError("--blend weighs several models: give --model twice or more")
        if len(self.blend) != len(self.ensemble):
            raise ConfigError(
                f"--blend has {len(self.blend)} weights for {len(self.ensemble)} models; give one per --model"
            )
        if any(w < 0 for w in self.blend) or sum(self.blend) <= 0:
            raise ConfigError(
                f"--blend {','.join(f'{w:g}' for w in self.blend)}: weights must be >= 0 with a positive sum"
            )


SECRET_SHOWN = "(set)"


def _shown(item: Field, value: Any) -> Any:
    return SECRET_SHOWN if value is not None and spec_of(item).secret else value


def setting_fields() -> tuple[Field, ...]:
    """Every setting in declaration order (the order of `--dry-run`, reports and reproduce commands)."""
    return _SETTING_FIELDS


def names_in_group(group: str) -> frozenset[str]:
    """The settings only the engines of `group` read (see SettingSpec.group)."""
    return frozenset(item.name for item in _SETTING_FIELDS if spec_of(item).group == group)


_SETTING_FIELDS = tuple(item for item in fields(Settings) if item.name != "sources")
