"""Typed settings, resolved in layers: built-in defaults < configs/*.toml < user config < preset < CLI flags.

Every resolved value remembers which layer set it, so `--dry-run` and the report can say why a value
is what it is.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from studio.errors import ConfigError

COLOR_FIXES = ("none", "wavelet", "wavelet-dwt", "adain", "histogram", "lab")
FORMATS = ("png", "jpg", "webp", "tiff")
FACE_MODELS = ("none", "gfpgan", "codeformer", "restoreformer")
OFFLOAD_MODES = ("encoders", "none", "model", "sequential")
STAGE1_MODES = ("fast", "lanczos", "none")
DTYPES = ("fp16", "bf16", "fp32")
TASKS = ("sr", "jpeg", "denoise")

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own decompression-bomb limit (2x its warning threshold)


@dataclass
class Settings:
    """Everything one restore job needs. Field names are the CLI option names with '-' -> '_'."""

    engine: str = "auto"  # checked against the engine registry by the runner
    model: str | None = None
    ensemble: list[str] | None = None  # several --model: all of them, blended (model holds the first)
    blend: list[float] | None = None  # the ensemble's weights, normalised to sum 1
    task: str = "sr"  # sr | jpeg | denoise: jpeg and denoise clean up at the original size first
    scale: float = 4.0
    preset: str | None = None
    prompt: str = ""
    negative_prompt: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    steps: int = 25
    guidance: float = 4.0
    noise_level: int = 20
    fidelity: float | None = None  # None: the engine's result as is; 0-1: blend toward a Lanczos upscale
    strength: float = 0.5
    scheduler: str | None = None
    # Adapter-guided diffusion engines (stablesr, supir). None: derived from --fidelity or the engine default.
    adapter: str | None = None  # ControlNet folder/hub id, or an official StableSR/SUPIR checkpoint
    adapter_scale: float | None = None  # ControlNet conditioning scale / SPADE-ZeroSFT modulation scale
    denoise: float | None = (
        None  # fraction of the schedule run from the noised stage-1 latent (1: from pure noise level)
    )
    pull: float | None = None  # per-step pull of the predicted clean latent toward the stage-1 latent (0: off)
    cfw: float | None = None  # StableSR CFW weight w: 0 plain decoder, 1 follows the input
    stage1: str | None = None  # how the input reaches the output size: fast, lanczos, none
    # SUPIR's sampler. None: derived from --strength (see engines/supir/engine.py).
    restore_tau: float | None = None  # restoration guidance exponent tau; negative: off
    cfg_start: float | None = None  # CFG at the highest noise, running linearly to --guidance at the lowest
    adapter_scale_start: float | None = None  # control scale at the highest noise (None: constant --adapter-scale)
    churn: float = 5.0  # EDM s_churn: noise re-added each step (0: deterministic Euler)
    s_noise: float = 1.003  # EDM s_noise: scale of the churn noise
    dtype: str | None = None  # diffusion dtype fp16, bf16, fp32 (None: fp16 on CUDA, fp32 on CPU)
    min_side: int = 1024  # diffusion works with the short side at least this (0: at the output size)
    caption: bool = False  # fill {caption} in the prompt from an image captioner
    caption_model: str | None = None  # transformers image-to-text model (None: a small default)
    color_fix: str | None = None  # None: the engine's own default (wavelet for diffusion, none otherwise)
    faces: str = "none"
    face_model: str | None = None
    face_fidelity: float = 0.5
    only_center_face: bool = False
    max_faces: int | None = None
    min_face_size: int = 24
    tile: int | None = None  # None: chosen automatically; 0: no tiling
    tile_overlap: int = 32  # input pixels; 16 leaves seams of 2-3/255 with Real-ESRGAN, 32 keeps them under 0.3/255
    format: str = "png"
    quality: int = 95
    dpi: float | None = None  # print resolution of the output; None: the input's, scaled so the print size stays
    device: str = "auto"
    threads: int | None = None  # CPU threads for the fast engine's ncnn path; None: every physical core
    offload: str = "encoders"
    fallback: str | None = None
    alpha: str = "bicubic"  # how the alpha channel is upscaled: bicubic or model
    max_pixels: int = DEFAULT_MAX_PIXELS
    force_jpeg: bool = False
    sidecar: bool = False  # also write OUTPUT.json with the provenance
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (no `sources`), for provenance and reports."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"}

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")

    def validate(self) -> None:
        """Reject impossible values with a message naming the option, the value and what is allowed."""
        _choice("format", self.format, FORMATS)
        _choice("faces", self.faces, FACE_MODELS)
        _choice("offload", self.offload, OFFLOAD_MODES)
        _choice("alpha", self.alpha, ("bicubic", "model"))
        _choice("task", self.task, TASKS)
        self._validate_ensemble()
        if self.color_fix is not None:
            _choice("color-fix", self.color_fix, COLOR_FIXES)
        if self.stage1 is not None:
            _choice("stage1", self.stage1, STAGE1_MODES)
        if self.dtype is not None:
            _choice("dtype", self.dtype, DTYPES)
        if self.churn < 0 or self.s_noise < 0:
            raise ConfigError(f"--churn {self.churn} / --s-noise {self.s_noise}: expected 0 or more")
        if self.min_side < 0 or self.min_side > 4096:
            raise ConfigError(f"--min-side {self.min_side}: expected 0 (off) to 4096 pixels")
        if self.cfg_start is not None and self.cfg_start < 0:
            raise ConfigError(f"--cfg-start {self.cfg_start}: expected 0 or more")
        if self.adapter_scale_start is not None and not (0.0 <= self.adapter_scale_start <= 2.0):
            raise ConfigError(f"--adapter-scale-start {self.adapter_scale_start}: expected a value from 0 to 2")
        if self.fallback is not None:
            _choice("fallback", self.fallback, ("none", "fast", "classical"))
        if not (0.25 <= self.scale <= 16):
            raise ConfigError(f"--scale {self.scale}: expected a factor from 0.25 to 16")
        for name in ("fidelity", "strength", "face_fidelity", "denoise", "pull", "cfw"):
            value = getattr(self, name)
            if value is not None and not (0.0 <= value <= 1.0):
                raise ConfigError(f"--{name.replace('_', '-')} {value}: expected a value from 0 to 1")
        if self.adapter_scale is not None and not (0.0 <= self.adapter_scale <= 2.0):
            raise ConfigError(f"--adapter-scale {self.adapter_scale}: expected a value from 0 to 2")
        if self.steps < 1 or self.steps > 1000:
            raise ConfigError(f"--steps {self.steps}: expected 1 to 1000")
        if not (0 <= self.noise_level <= 350):
            raise ConfigError(f"--noise-level {self.noise_level}: expected 0 to 350")
        if self.tile is not None and self.tile != 0 and self.tile < 32:
            raise ConfigError(f"--tile {self.tile}: expected 0 (off) or at least 32 pixels")
        if self.tile_overlap < 0:
            raise ConfigError(f"--tile-overlap {self.tile_overlap}: expected 0 or more pixels")
        if self.max_faces is not None and self.max_faces < 1:
            raise ConfigError(f"--max-faces {self.max_faces}: expected 1 or more")
        if self.guidance < 0:
            raise ConfigError(f"--guidance {self.guidance}: expected 0 or more (1 turns guidance off)")
        if self.seed is not None and not (0 <= self.seed < 2**63):
            raise ConfigError(f"--seed {self.seed}: expected a whole number from 0")
        if not (1 <= self.quality <= 100):
            raise ConfigError(f"--quality {self.quality}: expected 1 to 100")
        if self.dpi is not None and not (1 <= self.dpi <= 100_000):
            raise ConfigError(f"--dpi {self.dpi}: expected 1 to 100000 pixels per inch")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads {self.threads}: expected 1 or more")
        if self.max_pixels < 256:
            raise ConfigError(f"--max-pixels {self.max_pixels}: expected at least 256")

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


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"--{name} {value!r}: expected one of {', '.join(allowed)}")


_FIELD_TYPES = {f.name: f for f in fields(Settings) if f.name != "sources"}


_TYPES: dict[str, tuple[type, ...]] = {
    "float": (int, float),
    "int": (int,),
    "bool": (bool,),
    "str": (str,),
    "dict[str, str]": (dict,),
    "list[str]": (list,),
    "list[float]": (list,),
}
_ITEM_TYPES: dict[str, tuple[type, ...]] = {"list[str]": (str,), "list[float]": (int, float)}


def _coerce(name: str, value: Any, origin: str) -> Any:
    """Check a TOML value against the field's declared type; the error names the file and key."""
    declared = str(_FIELD_TYPES[name].type).split("|")[0].strip()
    expected = _TYPES[declared]
    if (isinstance(value, bool) and bool not in expected) or not isinstance(value, expected):
        raise ConfigError(f"{origin}: key '{name}' = {value!r}: expected {declared}")
    if declared.startswith("dict") and not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{origin}: key '{name}': every value must be a string (write era = \"1950s\")")
    if declared in _ITEM_TYPES:
        if not all(isinstance(v, _ITEM_TYPES[declared]) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{origin}: key '{name}' = {value!r}: expected {declared}")
        return [float(v) for v in value] if declared == "list[float]" else list(value)
    return float(value) if declared == "float" else value


def layer_rank(source: str) -> int:
    """Order of the layers a value can come from: 0 built-in default ... 5 command line.

    configs/defaults.toml counts as a default: it only writes the built-in values down.
    """
    if source in ("default", "config:defaults.toml"):
        return 0
    for rank, prefix in ((1, "user:"), (2, "config:"), (3, "preset:"), (5, "cli")):
        if source.startswith(prefix):
            return rank
    return 0


def apply_layer(settings: Settings, values: Mapping[str, Any], origin: str) -> Settings:
    """Return a copy of `settings` with `values` applied on top, recording `origin` for each key."""
    updates: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in _FIELD_TYPES:
            if origin == "cli":  # the command line and the Python API's keyword arguments
                raise ConfigError(f"unknown option '{key}' (known: {', '.join(_FIELD_TYPES)})")
            raise ConfigError(f"{origin}: unknown key '{key}'")
        if value is None:
            continue
        updates[name] = _coerce(name, value, origin)
    new = dataclasses.replace(settings, **updates)
    new.sources = dict(settings.sources)
    for name in updates:
        new.sources[name] = origin
    return new


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning syntax errors into one line that names the file."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def project_root() -> Path:
    """The folder holding prompts/ and configs/: the package's data copy in a wheel, else the checkout."""
    package = Path(__file__).resolve().parents[1]
    bundled = package / "_data"
    return bundled if bundled.is_dir() else package.parent


def builtin_config_files() -> list[Path]:
    """The shipped engine defaults (configs/defaults.toml). The weights registry is read by weights.py."""
    path = project_root() / "configs" / "defaults.toml"
    return [path] if path.is_file() else []


def user_config_file() -> Path:
    """Per-user config: $STUDIO_CONFIG, else $XDG_CONFIG_HOME/studio/config.toml."""
    if env := os.environ.get("STUDIO_CONFIG"):
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "studio" / "config.toml"


def _restore_table(data: dict[str, Any], origin: str) -> dict[str, Any]:
    """Config files keep job settings under [restore]; other tables are ignored here."""
    table = data.get("restore", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: [restore] must be a table")
    return table


def resolve(
    cli: Mapping[str, Any],
    config_file: Path | None = None,
    preset_values: Mapping[str, Any] | None = None,
    preset_origin: str = "preset",
) -> Settings:
    """Layer defaults < configs/*.toml < user config < --config < preset < CLI flags, then validate.

    `cli` holds only the flags the user actually gave (None means "not given").
    """
    settings = Settings()
    for path in builtin_config_files():
        settings = apply_layer(settings, _restore_table(read_toml(path), str(path)), f"config:{path.name}")
    user_file = user_config_file()
    if user_file.is_file():
        settings = apply_layer(settings, _restore_table(read_toml(user_file), str(user_file)), f"user:{user_file}")
    if config_file is not None:
        settings = apply_layer(
            settings, _restore_table(read_toml(config_file), str(config_file)), f"config:{config_file}"
        )
    if preset_values:
        settings = apply_layer(settings, preset_values, preset_origin)
    settings = apply_layer(settings, {k: v for k, v in cli.items() if v is not None}, "cli")
    settings.validate()
    return settings
