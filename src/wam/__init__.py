"""wam: World Action Models (Light-WAM, Fast-WAM) for robot manipulation.

The top-level import is light: it pulls in neither torch nor a simulator. Import the
submodules you need (`wam.data`, `wam.envs`, `wam.policies`, ...).
"""

__version__ = "0.1.0"
