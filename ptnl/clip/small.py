"""Small CLIPs built with the real ``clip.model.CLIP`` classes and the real vocabulary: for tests
and demos where the OpenAI weights are not available."""
import os
import os.path as osp

import torch

from ptnl.io import atomic_write


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
    """Save a small randomly initialised CLIP state dict to ``path`` (atomically); returns ``path``."""
    sd = small_clip_state_dict(kind, image_resolution=image_resolution, seed=seed)
    atomic_write(str(path), lambda f: torch.save(sd, f), mode="wb")
    return path


# Small open_clip model configs (open_clip's JSON schema): a causal CLIP-like text tower pooled at the
# end-of-text token, and a SigLIP-like one (no causal mask, pooled at the last position, linear
# projection with bias, a logit bias). Widths as above; the real vocabulary.
_VISION = {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8}
SMALL_OPEN_CLIP_CONFIGS = {
    "ptnl-tiny-clip": {"embed_dim": 32, "quick_gelu": False, "vision_cfg": dict(_VISION),
                       "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2}},
    "ptnl-tiny-sigmoid": {"embed_dim": 32, "init_logit_bias": -10, "custom_text": True, "vision_cfg": dict(_VISION),
                         "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2,
                                      "no_causal_mask": True, "proj_bias": True, "pool_type": "last",
                                      "norm_kwargs": {"eps": 1e-6}}},
}


def register_small_open_clip_configs(folder):
    """Write ``SMALL_OPEN_CLIP_CONFIGS`` as JSON files into ``folder`` and add them to open_clip's
    architectures (``open_clip.add_model_config``); returns their names."""
    import json

    import open_clip

    os.makedirs(folder, exist_ok=True)
    for name, cfg in SMALL_OPEN_CLIP_CONFIGS.items():
        atomic_write(osp.join(folder, name + ".json"), lambda f, cfg=cfg: json.dump(cfg, f, indent=1))
    open_clip.add_model_config(folder)
    return list(SMALL_OPEN_CLIP_CONFIGS)


def save_small_open_clip(arch, path, seed=0):
    """A randomly initialised open_clip model of architecture ``arch`` (registered), its state dict saved
    to ``path`` (safetensors when the name ends so, else torch.save); returns ``path``."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    with torch.no_grad():  # an initialised SigLIP logit scale/bias, as trained ones are not the init values
        model.logit_scale.fill_(2.3)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save
        atomic_write(path, lambda f: f.write(save(sd)), mode="wb")
    else:
        atomic_write(path, lambda f: torch.save(sd, f), mode="wb")
    return path


class NoStartTokenizer:
    """SigLIP's token layout on CLIP's vocabulary, for tests without the Hugging Face tokenizer files:
    no start token, the text, end-of-text, padded with end-of-text to ``context_length``."""

    def __init__(self, context_length=24):
        from open_clip.tokenizer import SimpleTokenizer
        self.inner = SimpleTokenizer()
        self.context_length = context_length

    def count_tokens(self, text):
        return len(self.inner.encode(text))

    def __call__(self, texts, context_length=None):
        n = context_length or self.context_length
        eot = self.inner.eot_token_id
        out = torch.full((len(texts), n), eot, dtype=torch.long)
        for i, text in enumerate([texts] if isinstance(texts, str) else texts):
            ids = (self.inner.encode(text) + [eot])[:n]
            out[i, :len(ids)] = torch.tensor(ids)
        return out

