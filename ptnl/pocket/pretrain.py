"""Pretraining of the pocket CLIP: the real ``clip.model.CLIP`` (a small ModifiedResNet image
tower, a small causal text transformer, the full 49408-token vocabulary), the real tokenizer and
CLIP's symmetric contrastive loss, on ``world.pretraining_batch``. Deterministic from a seed.

The ViT variant (``vit=True``, the ``pocket-vit`` backbone) keeps the shipped pocket text tower
frozen and trains only a small ``clip.model.VisionTransformer`` against it by the same loss on the
same batches: MaPLe and PromptSRC prompt a ViT's blocks.

    python -m ptnl.pocket.pretrain --out pocket.pt [--steps N --seed S] [--vit]
"""
import argparse
import math
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ptnl.clip.preprocess import CLIP_MEAN, CLIP_STD
from ptnl.io import atomic_write
from ptnl.pocket import world

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import clip
    from clip.model import CLIP

MEAN, STD = CLIP_MEAN, CLIP_STD  # CLIP's input normalisation (the trainers' INPUT.PIXEL_MEAN / PIXEL_STD)

RESOLUTION = 64
ARCH = dict(embed_dim=128, image_resolution=RESOLUTION, vision_layers=(1, 1, 1, 1), vision_width=16,
            vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=64,
            transformer_heads=1, transformer_layers=4)
# About 4 minutes on 2 CPU cores (measured: 0.22 s a step, data included).
DEFAULTS = dict(steps=1000, batch_size=128, lr=2e-3, warmup=60, weight_decay=0.1, crop_p=0.35)
# The ViT variant: patch 8 at 64 px (64 patches and the class token), 4 blocks (as the text tower:
# MaPLe's and PromptSRC's prompt depths are bounded by both towers), width 96 (one head), output
# the pocket embedding; the text tower (and logit scale) are the shipped pocket.pt's, frozen.
VIT_ARCH = dict(ARCH, vision_layers=4, vision_width=96, vision_patch_size=8)
VIT_DEFAULTS = dict(DEFAULTS)  # the same recipe (about 20 minutes of one CPU core: 1.2 s a step)
VISUAL = "visual."  # the image tower's keys in a CLIP state dict


def build_model(seed=0, arch=None):
    torch.manual_seed(seed)
    return CLIP(**(arch or ARCH))


def vit_model(seed=0, text_weights=None):
    """The ViT pocket CLIP before pretraining: a fresh ``VIT_ARCH`` image tower and the text tower
    (and logit scale) of ``text_weights`` (default: the shipped pocket.pt), frozen."""
    from ptnl.clip.weights import read_state_dict
    from ptnl.pocket.records import SHIPPED_WEIGHTS
    model = build_model(seed, VIT_ARCH)
    text = {k: v for k, v in read_state_dict(text_weights or SHIPPED_WEIGHTS).items() if not k.startswith(VISUAL)}
    missing, unexpected = model.load_state_dict(text, strict=False)
    if unexpected or any(not k.startswith(VISUAL) for k in missing):
        raise ValueError("{} is not a pocket CLIP text tower (missing {}, unexpected {})".format(
            text_weights or SHIPPED_WEIGHTS, [k for k in missing if not k.startswith(VISUAL)], unexpected))
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(VISUAL))
    return model


def to_tensor(images):
    """uint8 [N, H, W, 3] -> normalised float [N, 3, H, W]."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(x, gen, crop_p):
    """Random horizontal flips and, for a fraction ``crop_p`` of the batch, a random square crop
    (side 35-100%) resized back: the zoom that the trainers' random resized crops apply."""
    from torchvision.ops import roi_align
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    crop = torch.rand(n, generator=gen) < crop_p
    if crop.any():
        idx = crop.nonzero().flatten()
        side = (0.35 + 0.65 * torch.rand(len(idx), generator=gen)) * w
        x0 = torch.rand(len(idx), generator=gen) * (w - side)
        y0 = torch.rand(len(idx), generator=gen) * (h - side)
        boxes = torch.stack([idx.float(), x0, y0, x0 + side, y0 + side], dim=1)
        x = x.clone()
        x[idx] = roi_align(x, boxes, output_size=(h, w), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return x


def encode_text(model, tokens):
    """CLIP's ``encode_text`` on only the positions up to the last end-of-text token (the
    transformer is causal: identical features), as ``ptnl.clip.text.TextEncoder`` does."""
    from ptnl.clip.text import TextEncoder
    return TextEncoder(model)(model.token_embedding(tokens), tokens)


def contrastive_loss(model, images, tokens):
    img = F.normalize(model.encode_image(images), dim=-1)
    with torch.set_grad_enabled(torch.is_grad_enabled() and model.token_embedding.weight.requires_grad):
        txt = F.normalize(encode_text(model, tokens), dim=-1)  # a frozen text tower needs no graph
    logits = model.logit_scale.exp() * img @ txt.t()
    target = torch.arange(len(img))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def _param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "embedding" in name or "logit_scale" in name or "bn" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def pretrain(seed=0, steps=None, batch_size=None, lr=None, log=print, vit=False, **overrides):
    """Train the pocket CLIP (``vit``: only the ViT image tower of ``vit_model``); returns (model
    in eval mode, per-step losses)."""
    opts = dict(VIT_DEFAULTS if vit else DEFAULTS)
    opts.update({k: v for k, v in dict(steps=steps, batch_size=batch_size, lr=lr, **overrides).items()
                 if v is not None})
    model = vit_model(seed) if vit else build_model(seed)
    model.train()
    optim = torch.optim.AdamW(_param_groups(model, opts["weight_decay"]), lr=opts["lr"], betas=(0.9, 0.98),
                              eps=1e-6)
    total = opts["steps"]

    def lr_at(step):
        if step < opts["warmup"]:
            return opts["lr"] * (step + 1) / opts["warmup"]
        return 0.5 * opts["lr"] * (1 + math.cos(math.pi * (step - opts["warmup"]) / max(1, total - opts["warmup"])))

    gen = torch.Generator().manual_seed(seed)
    losses, start = [], time.time()
    for step in range(total):
        images, texts = world.pretraining_batch(seed, step, opts["batch_size"], RESOLUTION)
        tokens = clip.tokenize(texts)
        for group in optim.param_groups:
            group["lr"] = lr_at(step)
        x = augment(to_tensor(images), gen, opts["crop_p"])
        loss = contrastive_loss(model, x, tokens)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if log and ((step + 1) % 100 == 0 or step == 0):
            log("pretraining step {}/{}: loss {:.3f} (mean of the last 100), {:.0f}s".format(
                step + 1, total, float(np.mean(losses[-100:])), time.time() - start))
    return model.eval(), losses


def save_weights(model, path, prefix=""):
    """The state dict (only the keys starting with ``prefix``) in fp16 (as OpenAI ships CLIP;
    ``clip.model.build_model`` converts to fp16 anyway), integer buffers unchanged."""
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items() if k.startswith(prefix)}
    atomic_write(path, lambda f: torch.save(sd, f), mode="wb")
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--vit", action="store_true", help="the ViT image tower against the shipped text tower; "
                   "writes the image tower's weights only")
    a = p.parse_args(argv)
    model, _ = pretrain(a.seed, a.steps, a.batch_size, a.lr, vit=a.vit)
    print(save_weights(model, a.out, VISUAL if a.vit else ""))


if __name__ == "__main__":
    main()
