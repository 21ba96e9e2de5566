#!/usr/bin/env bash
# Install wam into the current Python environment (the active virtualenv, if any).
#   usage: bash scripts/install.sh [EXTRAS]     EXTRAS defaults to "all" (sim,text,serve); tests use "all,dev"
# 1. the system GL libraries MuJoCo needs for offscreen rendering (EGL + Mesa), where missing;
# 2. the pinned torch 2.13.0 where no torch is installed, so that resolving `torch>=2.4` never
#    pulls an unpinned build: the CPU build on machines without an NVIDIA driver (from a local
#    wheel store or mirror when pip is configured with one, else from PyTorch's CPU index), the
#    default CUDA build otherwise; set TORCH_SPEC to choose another;
# 3. the package itself, editable, with the requested extras.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-all}"
PY="${PYTHON:-python3}"

gl_missing() {
  local libs
  libs=$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null || true)
  for lib in libEGL.so.1 libEGL_mesa.so.0 libOpenGL.so.0; do
    grep -q "$lib" <<<"$libs" || return 0
  done
  return 1
}
if gl_missing; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "[install] system GL libraries for MuJoCo (EGL, Mesa)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      libegl1 libopengl0 libgl1 libegl-mesa0 libgl1-mesa-dri libglx-mesa0 >/dev/null
  else
    echo "[install] warning: no apt-get; install EGL + Mesa (libEGL, libOpenGL) for MuJoCo rendering yourself" >&2
  fi
fi

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if [ -n "${TORCH_SPEC:-}" ] || command -v nvidia-smi >/dev/null 2>&1; then
    echo "[install] ${TORCH_SPEC:-torch==2.13.0}"
    "$PY" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
  else
    echo "[install] torch==2.13.0+cpu"
    "$PY" -m pip install -q "torch==2.13.0+cpu" 2>/dev/null ||
      "$PY" -m pip install -q --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
  fi
fi

echo "[install] wam[$EXTRAS]"
"$PY" -m pip install -q -e ".[$EXTRAS]"
if [[ ",$EXTRAS," == *",dev,"* ]]; then
  # openpi's client, for the protocol-compatibility test: its numpy<2 pin is stale (the modules
  # we use work with numpy 2) and would downgrade numpy under pyarrow, so its deps go in by hand
  "$PY" -m pip install -q "dm-tree>=0.1.8" "pillow>=9"
  "$PY" -m pip install -q --no-deps "openpi-client==0.1.2"
fi
# pyenv keeps console scripts behind shims that must be refreshed after an install.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
"$PY" -c "import wam; print('[install] wam', wam.__version__, 'ready')"
