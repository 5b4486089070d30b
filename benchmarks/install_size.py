"""How much disk the quick start's environment takes: studio's dependency closure, measured on the installed
packages (the sizes their RECORD files list), as JSON.

    python benchmarks/install_size.py                 # studio + its [test] extra, as the README installs it
    python benchmarks/install_size.py --extras ""     # studio alone

It reads the requirements from pyproject.toml (not from studio's installed metadata, so a change to the file
is measured before it is installed), follows them through the installed distributions (markers and extras
evaluated), and reports the total, the largest packages, and the CUDA share: the nvidia-* and triton wheels
and the CUDA libraries inside a CUDA build of torch, which the CPU build of torch does not have.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CUDA_FILE = re.compile(r"^torch/lib/.*(cuda|nvshmem|cudnn|nccl|cublas)", re.IGNORECASE)


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _size(dist: metadata.Distribution) -> tuple[int, int]:
    """(all bytes, bytes of CUDA libraries) of an installed distribution, from its RECORD."""
    total = cuda = 0
    for file in dist.files or []:
        size = int(file.size or 0)
        total += size
        cuda += size if CUDA_FILE.match(str(file)) else 0
    return total, cuda


def closure(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions `requirements` need, transitively (markers evaluated, extras followed)."""
    found: dict[str, metadata.Distribution] = {}
    queue = [(Requirement(text), "") for text in requirements]
    while queue:
        requirement, extra = queue.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        key = _name(requirement.name)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue  # not installed here: not part of this measurement
        for wanted in requirement.extras:
            queue += [(Requirement(r), wanted) for r in dist.requires or [] if "extra ==" in r]
        if key in found:
            continue
        found[key] = dist
        queue += [(Requirement(r), "") for r in dist.requires or [] if "extra ==" not in r]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="test", help="comma-separated extras of studio to include")
    args = parser.parse_args()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in filter(None, args.extras.split(",")):
        requirements += [r for r in project["optional-dependencies"][extra] if not r.startswith("studio")]
        if "studio[serve]" in project["optional-dependencies"][extra]:
            requirements += project["optional-dependencies"]["serve"]
    sizes = {name: _size(dist) for name, dist in closure(requirements).items()}
    cuda_wheels = sum(total for name, (total, _) in sizes.items() if name.startswith("nvidia-") or name == "triton")
    cuda_in_torch = sum(cuda for _, cuda in sizes.values())
    mb = 1e6
    largest = sorted(sizes.items(), key=lambda item: -item[1][0])[:12]
    print(
        json.dumps(
            {
                "extras": args.extras,
                "packages": len(sizes),
                "total_mb": round(sum(total for total, _ in sizes.values()) / mb),
                "cuda_wheels_mb (nvidia-*, triton)": round(cuda_wheels / mb),
                "cuda_libraries_in_torch_mb": round(cuda_in_torch / mb),
                "largest_mb": {name: round(total / mb) for name, (total, _) in largest},
                "installed": sorted(sizes),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
