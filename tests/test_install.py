"""Install weight: the quick start's environment holds no package studio does not use, and what studio uses of
facexlib (RetinaFace ResNet50's network class) works when facexlib is installed with `--no-deps`."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from studio import weights
from studio.errors import WeightsMissing

ROOT = Path(__file__).resolve().parents[1]
UNUSED = {"numba", "llvmlite", "filterpy", "matplotlib"}
"""What facexlib's own requirements bring in (~290 MB, measured by benchmarks/install_size.py)."""


def _closure() -> set[str]:
    spec = importlib.util.spec_from_file_location("install_size", ROOT / "benchmarks" / "install_size.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = [*project["dependencies"], *extras["serve"], *(r for r in extras["test"] if "studio" not in r)]
    return set(module.closure(requirements))


def test_the_quick_start_installs_no_package_studio_does_not_use() -> None:
    found = _closure()
    assert "torch" in found and "ncnn" in found  # the walk really follows the requirements
    assert not found & UNUSED


@pytest.mark.slow
def test_retinaface_builds_without_facexlibs_own_requirements() -> None:
    """`pip install facexlib --no-deps` is enough: the class builds with numba, filterpy, matplotlib blocked."""
    pytest.importorskip("facexlib", reason="facexlib not installed (pip install 'facexlib>=0.3' --no-deps)")
    code = (
        "import sys, importlib.abc\n"
        f"blocked = {sorted(UNUSED)!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in blocked: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import torch\n"
        "from facexlib.detection.retinaface import RetinaFace\n"
        "RetinaFace(network_name='resnet50', half=False, device=torch.device('cpu'))\n"
        "print('built')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "built" in done.stdout, done.stderr


def test_weights_whose_network_package_is_missing_say_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = weights.get("retinaface-resnet50")
    target = weights.weights_dir() / spec.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"stand-in: resolve checks presence, not content")
    try:
        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a: None if name == "facexlib" else real(name, *a)
        )
        with pytest.raises(WeightsMissing, match=r"pip install 'facexlib>=0.3' --no-deps"):
            weights.resolve("retinaface-resnet50", "detector")
    finally:
        target.unlink()
