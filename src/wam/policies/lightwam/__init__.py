"""Light-WAM: a frozen Wan video DiT adapted with LoRA and residual adapters, read by a
state-fusion action expert that decodes a whole action chunk in one forward pass.

    configuration.py   LightWAMConfig and its presets `lightwam-wan2.1-1.3b`, `lightwam-tiny` (torch-free)
    lora.py            LoRA on the backbone's linears through peft; exact parameter counts
    backbone.py        the adapted backbone: weights, LoRA, freezing, the truncated action pass
    state_fusion.py    the StateFusionActionExpert (learned-query poolers, compressors, fusion, head)
    conditioning.py    the DiT's text context: instruction tokens plus a proprioception token
    modeling.py        LightWAMPolicy (torch): the two training passes, losses, inference
"""
