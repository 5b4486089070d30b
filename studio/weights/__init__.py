"""Model weights: the registry (configs/weights.toml), fetch and verify, and the ncnn import.

Modules: `catalog` (registry entries and where each lives on disk), `fetch` (resolve, pull, verify,
import), `hub` (Hugging Face snapshots), `checksum` (cached sha256), `ncnn` (ncnn -> safetensors).
Callers use the package: `from studio import weights; weights.resolve(name, kind)`.
"""

from studio.weights.catalog import (
    WeightSpec,
    composite_members,
    converted_path,
    find,
    get,
    local_path,
    missing_package,
    names,
    offline_files,
    registry,
    weights_dir,
)
from studio.weights.checksum import file_sha256
from studio.weights.fetch import Check, import_model, install_state, pull, resolve, verify
from studio.weights.hub import diffusers_allow_patterns

__all__ = [
    "Check",
    "WeightSpec",
    "composite_members",
    "converted_path",
    "diffusers_allow_patterns",
    "file_sha256",
    "find",
    "get",
    "import_model",
    "install_state",
    "local_path",
    "missing_package",
    "names",
    "offline_files",
    "pull",
    "registry",
    "resolve",
    "verify",
    "weights_dir",
]
