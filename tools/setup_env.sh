#!/usr/bin/env bash
# Builds mmship's environment in ./.venv (git-ignored), idempotently: a second
# run only checks pins and takes seconds.  Usage: bash tools/setup_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
. "$VENV/bin/activate"
pipq() { python -m pip install -q --disable-pip-version-check "$@"; }

# setuptools < 82: mmcv's setup.py and mmengine's `mmseg::` config lookup
# import pkg_resources, which newer setuptools dropped.
# wheel: older setuptools need it for the --no-build-isolation builds below.
python -c 'import setuptools, wheel, sys; sys.exit(int(setuptools.__version__.split(".")[0]) >= 82)' 2>/dev/null \
  || pipq "setuptools<82" wheel
# torch first and pinned, so nothing below can replace it.
python -c 'import torch, torchvision; assert torch.__version__.startswith("2.11.0") and torchvision.__version__.startswith("0.26.0")' 2>/dev/null \
  || pipq torch==2.11.0 torchvision==0.26.0

# mmcv 2.1.0 with its compiled ops (mmseg imports them).  Built from source
# against the installed torch without build isolation (an isolated build has
# no torch and silently drops the ops).  The wheel is cached per torch
# version and Python tag, in .cache/ and in the user's cache (so that a fresh
# clone on the same machine skips the build; MMSHIP_CACHE moves it).
if ! python -c 'import mmcv, mmcv._ext; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; then
  key=$(python -c 'import sys, torch; print(f"torch-{torch.__version__}/cp{sys.version_info[0]}{sys.version_info[1]}")')
  cache=.cache/mmcv-wheels/${key%/*}
  user_cache=${MMSHIP_CACHE:-$HOME/.cache/mmship}/mmcv-wheels/${key%/*}
  pat="mmcv-2.1.0-${key#*/}-*.whl"
  whl=$(ls "$cache"/$pat "$user_cache"/$pat 2>/dev/null | head -n 1 || true)
  if [ -z "$whl" ]; then
    echo "Building mmcv 2.1.0 with ops against ${key%/*} (about 10 minutes on 2 cores)..."
    pipq ninja psutil
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} python -m pip wheel -q --no-deps \
      --no-build-isolation --no-cache-dir -w "$cache" mmcv==2.1.0
    whl=$(ls "$cache"/$pat | head -n 1)
    (mkdir -p "$user_cache" && cp "$whl" "$user_cache"/) 2>/dev/null || true
  fi
  pipq --no-deps "$whl"
fi

pipq -r requirements.txt
# mim (see requirements.txt for why without its dependencies)
python -c 'from mim.version import __version__ as v; assert v == "0.3.9"' 2>/dev/null \
  || pipq --no-deps openmim==0.3.9
pipq --no-deps --no-build-isolation -e .
python -c 'import mmcv._ext, mmseg, mmpretrain, timm, mim, mmship; print("mmship environment ready:", mmship.__version__)'
