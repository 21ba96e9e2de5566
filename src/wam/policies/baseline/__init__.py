"""The no-world-model baseline: a small Wan-block transformer on the current camera frame(s),
proprioception and the instruction, regressing an action chunk.

    configuration.py   BaselineConfig and its presets `baseline-tiny`, `baseline-small` (torch-free)
    modeling.py        BaselinePolicy (torch)
"""
