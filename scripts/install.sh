#!/usr/bin/env bash
# Install wam into the current Python environment (the active virtualenv, if any).
#   usage: bash scripts/install.sh [EXTRAS]     EXTRAS defaults to "all" (sim,text,serve); tests use "all,dev"
# 1. the system GL libraries MuJoCo needs for offscreen rendering (EGL + Mesa), where missing;
# 2. the pinned torch build (CPU on machines without CUDA) where no torch is installed, so that
#    resolving `torch>=2.4` never pulls several GB of CUDA wheels; set TORCH_SPEC to choose another;
# 3. the package itself, editable, with the requested extras.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-all}"
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

gl_missing() {
  for lib in libEGL.so.1 libEGL_mesa.so.0 libOpenGL.so.0; do
    ldconfig -p | grep -q "$lib" || return 0
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
  echo "[install] $TORCH_SPEC"
  "$PY" -m pip install -q "$TORCH_SPEC"
fi

echo "[install] wam[$EXTRAS]"
"$PY" -m pip install -q -e ".[$EXTRAS]"
# pyenv keeps console scripts behind shims that must be refreshed after an install.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
"$PY" -c "import wam; print('[install] wam', wam.__version__, 'ready')"
