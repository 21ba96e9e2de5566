"""Fast-WAM: a Wan video DiT and an action DiT as a Mixture-of-Transformers, video modelled in training only.

configuration.py   FastWAMConfig, the variants and the presets (torch-free)
mask.py            the joint attention masks (first-frame-causal video, actions -> current frame)
action_dit.py      the action expert: ActionBlock (a WanBlock with a decoupled attention width), ActionDiT
mot.py             Mixture-of-Transformers over WanBlocks: joint layers, video prefill, cached action pass
init.py            the action expert initialised by interpolating the video DiT's weights
conditioning.py    instruction tokens + the proprioception token (the streams' cross-attention context)
modeling.py        FastWAMPolicy (streams, joint velocity, the policy contract)
losses.py          the training loss of each variant
sampling.py        inference of each variant (cached prefill + Euler action steps, joint, IDM)
fast_loop.py       the fast-path action loop (compiled step, hoisted cross-attention K/V, CUDA graph)
"""
