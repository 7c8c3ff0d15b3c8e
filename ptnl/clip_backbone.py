"""CLIP by name or by file: one loader for every trainer, plus the text encoder that runs only
the positions the causal transformer needs."""
import hashlib
import os
import os.path as osp
import warnings
import zipfile

import torch
import torch.nn as nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # openai-clip imports the deprecated pkg_resources
    import clip
    from clip import clip as _clip_module
    from clip.model import build_model

# Pretrained weights by name: the OpenAI release (url, whose path holds the file's sha256).
PRETRAINED = dict(_clip_module._MODELS)


def _pocket_weights():
    from ptnl.pocket import weights_file
    return weights_file()


# Weights this project builds itself, by name: a function returning the file (built on first use).
LOCAL_MODELS = {"pocket": _pocket_weights}


def available_models():
    return list(PRETRAINED.keys()) + list(LOCAL_MODELS)


def clip_cache_dir():
    """Where named weights are downloaded and looked up (openai-clip's default folder)."""
    return os.environ.get("PTNL_CLIP_DIR") or osp.expanduser("~/.cache/clip")


class BackboneError(ValueError):
    """An unknown backbone name or unusable weights file."""


class WeightsNotFoundError(FileNotFoundError):
    """Named CLIP weights are not cached and cannot be downloaded."""


def _offline():
    return os.environ.get("PTNL_OFFLINE", "") not in ("", "0") or \
        os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def resolve_weights(name_or_path):
    """Path of the weights file for a CLIP name (downloaded into the cache when absent), for a
    local name (``LOCAL_MODELS``: built on first use) or for a file path. Raises ``BackboneError``
    for an unknown name and ``WeightsNotFoundError`` when the file is missing and cannot be fetched."""
    if osp.isfile(osp.expanduser(name_or_path)):
        return osp.abspath(osp.expanduser(name_or_path))
    if name_or_path in LOCAL_MODELS:
        return LOCAL_MODELS[name_or_path]()
    if name_or_path not in PRETRAINED:
        if os.sep in name_or_path or name_or_path.endswith((".pt", ".pth", ".bin")):
            raise BackboneError('CLIP weights file "{}" does not exist (MODEL.BACKBONE.NAME)'.format(name_or_path))
        raise BackboneError("Unknown backbone {!r} (MODEL.BACKBONE.NAME): expected one of {} or a path "
                            "to a weights file".format(name_or_path, ", ".join(available_models())))
    url = PRETRAINED[name_or_path]
    root = clip_cache_dir()
    target = osp.join(root, osp.basename(url))
    if osp.isfile(target):
        return target
    how = ('Download {} and place it at "{}" (or set PTNL_CLIP_DIR to the folder holding it, or '
           "pass the file path as MODEL.BACKBONE.NAME).".format(url, target))
    if _offline():
        raise WeightsNotFoundError('CLIP weights for {} not found at "{}" and downloads are off '
                                   "(PTNL_OFFLINE). {}".format(name_or_path, target, how))
    try:
        return _clip_module._download(url, root)  # checks the sha256 in the url
    except Exception as e:
        raise WeightsNotFoundError('CLIP weights for {} not found at "{}" and the download failed '
                                   "({}). {}".format(name_or_path, target, e, how)) from e


def _is_torchscript(path):
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def read_state_dict(path):
    """State dict of a TorchScript CLIP archive or of a saved state dict."""
    if _is_torchscript(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load is deprecated, still the format
            return torch.jit.load(path, map_location="cpu").state_dict()
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BackboneError('Cannot read CLIP weights from "{}": neither a TorchScript archive nor a '
                            "state dict ({})".format(path, e)) from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "text_projection" not in sd:
        raise BackboneError('"{}" is not a CLIP state dict (no text_projection)'.format(path))
    return sd


def file_digest(path, chunk=1 << 20):
    """sha256 of a file: the identity of a weights file in cache keys."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def load_clip(name_or_path, device="cpu", prec="fp32"):
    """CLIP (``clip.model.CLIP``) in eval mode, frozen-ready. ``prec`` fp16 keeps CLIP's half
    weights (CUDA only); fp32 and amp get fp32 weights. On CPU it is always fp32."""
    path = resolve_weights(name_or_path)
    model = build_model(read_state_dict(path))
    if prec != "fp16" or torch.device(device).type != "cuda":
        model = model.float()
    model.weights_path = path
    return model.to(device).eval()


def effective_precision(prec, device):
    """fp16 and amp need CUDA; elsewhere the run is fp32."""
    return prec if torch.device(device).type == "cuda" else "fp32"


def normalize(x):
    """``x`` scaled to unit L2 norm along the last dimension (CLIP's cosine features)."""
    return x / x.norm(dim=-1, keepdim=True)


class _QuickGELU(torch.autograd.Function):
    """CLIP's QuickGELU, x * sigmoid(1.702 x), keeping only x for the backward pass (autograd
    would keep the sigmoid and the product too): the same values, a third of the MLP memory."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(1.702 * x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(1.702 * x)
        return grad * (s + 1.702 * x * s * (1 - s))


class TextEncoder(nn.Module):
    """CLIP's text tower on prompt embeddings. The transformer is causal and the feature is read
    at the end-of-text token, so positions after the last end-of-text token cannot change the
    result; with ``truncate`` they are not computed at all."""

    def __init__(self, clip_model, truncate=True):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype
        self.truncate = truncate

    def forward(self, prompts, tokenized_prompts):
        eot = tokenized_prompts.argmax(dim=-1)
        n = int(eot.max()) + 1 if self.truncate else prompts.shape[1]
        x = prompts[:, :n] + self.positional_embedding[:n].type(self.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        mask = torch.full((n, n), float("-inf"), device=x.device).triu_(1).to(x.dtype)
        for block in self.transformer.resblocks:
            h = block.ln_1(x)
            x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
            h = _QuickGELU.apply(block.mlp.c_fc(block.ln_2(x)))
            x = x + block.mlp.c_proj(h)
        x = x.permute(1, 0, 2)  # LND -> NLD
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


def tokenize(texts):
    return clip.tokenize(texts)


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
