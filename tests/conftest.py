"""Session-wide test setup: headless MuJoCo rendering, quiet Meta-World experts."""

from __future__ import annotations

import os

import pytest

# MuJoCo picks its GL backend at import: EGL renders offscreen without a display.
os.environ.setdefault("MUJOCO_GL", "egl")


def pytest_configure(config: pytest.Config) -> None:
    # Meta-World's scripted policies warn on every new expert that their gains are high.
    config.addinivalue_line("filterwarnings", r"ignore:Constant\(s\) may be too high:UserWarning")
