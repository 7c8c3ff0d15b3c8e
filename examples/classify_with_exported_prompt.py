"""Classify images with plain CLIP and a prompt exported by `python -m ptnl.export` (no PTNL needed)."""
import json
import sys

import clip
import torch
from PIL import Image
from safetensors import safe_open


def load_backbone(name_or_file, device):
    """clip.load reads OpenAI names and TorchScript files; a plain state-dict file is built directly."""
    try:
        return clip.load(name_or_file, device=device, jit=False)
    except EOFError:  # clip.load cannot re-read a state dict after trying TorchScript
        model = clip.model.build_model(torch.load(name_or_file, map_location="cpu", weights_only=True))
        model = model.to(device).float() if device == "cpu" else model.to(device)
        return model, clip.clip._transform(model.visual.input_resolution)


def classify(prompt_file, image_paths, backbone=None, device="cpu", batch_size=32):
    """(class index of each image, class names): CLIP image features against the exported classifier."""
    with safe_open(prompt_file, "pt") as f:
        header = json.loads(f.metadata()["ptnl"])
        text, scale = f.get_tensor("text_features").to(device), f.get_tensor("logit_scale").item()
    model, preprocess = load_backbone(backbone or header["backbone"], device)
    predictions = []
    with torch.no_grad():
        for i in range(0, len(image_paths), batch_size):
            x = torch.stack([preprocess(Image.open(p)) for p in image_paths[i:i + batch_size]]).to(device)
            feats = model.encode_image(x.type(model.dtype)).float()
            predictions += (scale * feats / feats.norm(dim=-1, keepdim=True) @ text.t()).argmax(dim=-1).tolist()
    return predictions, header["classnames"]


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("prompt", help="the .safetensors file python -m ptnl.export wrote")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--backbone", help="CLIP name or weights file (default: the file's backbone, e.g. RN50)")
    a = p.parse_args()
    preds, names = classify(a.prompt, a.images, a.backbone)
    for path, k in zip(a.images, preds):
        print(path, names[k])
