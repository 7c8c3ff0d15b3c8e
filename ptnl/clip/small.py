"""Small CLIPs built with the real ``clip.model.CLIP`` classes and the real vocabulary: for tests
and demos where the OpenAI weights are not available."""
import os
import os.path as osp

import torch


def small_clip_state_dict(kind="vit", embed_dim=32, image_resolution=32, width=64, layers=2,
                          seed=0):
    """A state dict of a small CLIP built with the real ``clip.model.CLIP`` classes and the real
    vocabulary: for tests and demos where the OpenAI weights are not available. Widths are
    multiples of 64 because ``clip.model.build_model`` infers 64-wide attention heads."""
    from clip.model import CLIP
    torch.manual_seed(seed)
    if kind == "vit":
        vision_layers, patch = layers, 8
    else:
        vision_layers, patch = (1, 1, 1, 1), None
    model = CLIP(embed_dim=embed_dim, image_resolution=image_resolution, vision_layers=vision_layers,
                 vision_width=width if kind == "vit" else 16, vision_patch_size=patch,
                 context_length=77, vocab_size=49408, transformer_width=width,
                 transformer_heads=width // 64, transformer_layers=layers)
    return model.state_dict()


def save_small_clip(path, kind="vit", image_resolution=32, seed=0):
    """Save a small randomly initialised CLIP state dict to ``path``; returns ``path``."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    torch.save(small_clip_state_dict(kind, image_resolution=image_resolution, seed=seed), path)
    return path
