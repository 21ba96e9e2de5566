"""Reusable model blocks of the World Action Models.

    wan/              the Wan video diffusion transformer (DiT) both Light-WAM and Fast-WAM sit on
    codecs/           latent codecs (the Wan VAEs and a small trainable stand-in)
    text/             instruction encoders producing the token embeddings a DiT reads
    flow_matching.py  rectified flow matching shared by the video and action streams

Importing this package is light (no torch); import the submodules you need.
"""
