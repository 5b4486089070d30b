#!/usr/bin/env bash
# Keep pyproject's floors true: install exactly the lowest diffusers, transformers and huggingface_hub it
# allows into a separate folder (pip --target, no dependencies; tokenizers and kernels pinned to what
# transformers' floor accepts), put that folder first on the path and rerun the diffusion tests that touch
# their APIs.
set -euo pipefail
cd "$(dirname "$0")/.."
floors_dir=$(mktemp -d)
trap 'rm -rf "$floors_dir"' EXIT
pins=$(python - <<'PY'
import re, tomllib
names = {"diffusers", "transformers", "huggingface_hub"}
for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    name, floor = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+)", dep).groups() if ">=" in dep else (dep, None)
    if name in names:
        print(f"{name}=={floor}")
PY
)
# tokenizers and kernels pinned to what transformers' floor accepts (5.0 reads kernels if present and wants <0.11)
pip install -q --no-deps --target "$floors_dir" $pins tokenizers==0.22.2 kernels==0.10.5
PYTHONPATH="$floors_dir${PYTHONPATH:+:$PYTHONPATH}" python -m pytest -q -p no:cacheprovider tests/diffusion/test_controlnet.py \
    tests/diffusion/test_diffusion_loading.py tests/diffusion/test_edm_sampler.py tests/engines/sd_x4/test_sd_x4.py -k "matches_diffusers or match_diffusers or fp16 or broken or bfloat16 or dtype"
