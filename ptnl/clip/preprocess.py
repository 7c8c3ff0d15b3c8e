"""CLIP's input: the normalisation and interpolation its image encoders were trained with (the
``INPUT`` block of ``configs/trainers/*/*.yaml``) and the resolution a backbone expects, told from
its name or its weights' shapes without building the model."""
import os
import os.path as osp
import re
from typing import Dict, List, Tuple

from ptnl.clip.open_clip_backbone import is_open_clip, open_clip_preprocess
from ptnl.clip.weights import LOCAL_WEIGHTS, PRETRAINED, read_state_dict, resolve_weights
from ptnl.errors import ConfigError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The config's INPUT keys for CLIP's preprocessing (INPUT.SIZE comes from the backbone).
CLIP_INPUT: Dict[str, object] = {
    "INTERPOLATION": "bicubic",
    "PIXEL_MEAN": list(CLIP_MEAN),
    "PIXEL_STD": list(CLIP_STD),
    "TRANSFORMS": ["random_resized_crop", "random_flip", "normalize"],
}

# OpenAI's releases whose input is not 224 (RN50x4 ... and the @336px ViT), by name.
_OPENAI_SIZES = {"RN50x4": 288, "RN50x16": 384, "RN50x64": 448}


def state_dict_resolution(sd) -> int:
    """The input resolution of a CLIP state dict, as ``clip.model.build_model`` derives it."""
    if "visual.proj" in sd:  # ViT: patch size x grid
        patch = sd["visual.conv1.weight"].shape[-1]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        return int(patch * grid)
    return int(round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5) * 32)


def input_resolution(name_or_path: str) -> int:
    """The square input size (pixels) of the CLIP named by MODEL.BACKBONE.NAME.

    Args:
        name_or_path: an OpenAI name (told from the name: nothing is downloaded), a registered local
            name (its ``resolution`` when registered with one, else its weights are read) or a file.

    Raises ``BackboneError`` for an unknown name or a file that is not CLIP weights.
    """
    if is_open_clip(name_or_path):
        return int(open_clip_preprocess(name_or_path)["size"])
    if not osp.isfile(osp.expanduser(name_or_path)):
        if name_or_path in PRETRAINED:
            m = re.search(r"@(\d+)px$", name_or_path)
            return int(m.group(1)) if m else _OPENAI_SIZES.get(name_or_path, 224)
        if name_or_path in LOCAL_WEIGHTS:
            known = LOCAL_WEIGHTS.meta(name_or_path).get("resolution")
            if known is not None:
                return int(known() if callable(known) else known)
    path = resolve_weights(name_or_path)
    st = os.stat(path)
    key = (osp.abspath(path), st.st_size, st.st_mtime_ns)  # a sweep's checks ask once per run, of one file
    if key not in _FILE_SIZES:
        _FILE_SIZES[key] = state_dict_resolution(read_state_dict(path, shapes_only=True))
    return _FILE_SIZES[key]


_FILE_SIZES: Dict[Tuple[str, int, int], int] = {}


def check_input_size(size, res: int, name: str) -> None:
    """``ConfigError`` unless INPUT.SIZE ``size`` is the ``res`` x ``res`` input of backbone ``name``."""
    if tuple(size) != (res, res):
        raise ConfigError("INPUT.SIZE {} does not match the CLIP input resolution {} of {}; set INPUT.SIZE ({}, {}) "
                          "or leave INPUT.SIZE out to take the backbone's".format(tuple(size), res, name, res, res))


def backbone_input(name: str) -> Dict[str, object]:
    """The INPUT keys a backbone's own preprocessing implies: SIZE, and for open_clip backbones their
    PIXEL_MEAN, PIXEL_STD and INTERPOLATION (from the model's pretrained config: SigLIP's are not
    CLIP's); other backbones take CLIP's (``CLIP_INPUT``)."""
    res = input_resolution(name)
    if not is_open_clip(name):
        return {"SIZE": (res, res), "PIXEL_MEAN": list(CLIP_MEAN), "PIXEL_STD": list(CLIP_STD),
                "INTERPOLATION": CLIP_INPUT["INTERPOLATION"]}
    pp = open_clip_preprocess(name)
    if pp["interpolation"] not in ("bilinear", "bicubic", "nearest"):
        raise ConfigError("open_clip backbone {} preprocesses with interpolation {!r}, which INPUT.INTERPOLATION cannot "
                          "express".format(name, pp["interpolation"]))
    return {"SIZE": (res, res), "PIXEL_MEAN": [float(x) for x in pp["mean"]], "PIXEL_STD": [float(x) for x in pp["std"]],
            "INTERPOLATION": pp["interpolation"]}


def use_backbone_input(cfg, given) -> List[str]:
    """For an open_clip backbone, set INPUT.PIXEL_MEAN, PIXEL_STD and INTERPOLATION of an unfrozen
    config to the model's own (``backbone_input``; a trainer yaml's values are OpenAI CLIP's) unless
    the command line (``given``: its flat keys) sets them. Returns a note for the log. CoOp's
    augmentations (INPUT.TRANSFORMS) stay on top; INPUT.SIZE is the caller's (``check_input_size``)."""
    name = cfg.MODEL.BACKBONE.NAME
    if not is_open_clip(name):
        return []
    wanted = backbone_input(name)
    changed = []
    for key in ("PIXEL_MEAN", "PIXEL_STD", "INTERPOLATION"):
        current = cfg.INPUT[key] if key == "INTERPOLATION" else [float(x) for x in cfg.INPUT[key]]
        if "INPUT." + key not in given and current != wanted[key]:
            cfg.INPUT[key] = wanted[key]
            changed.append("INPUT.{} {}".format(key, wanted[key]))
    return ["Note: the preprocessing of backbone {} ({})".format(name, ", ".join(changed))] if changed else []


def test_transform(cfg, backbone: str = None, size: int = None):
    """The deterministic view every split is evaluated (and its features cached) through: CoOp's test
    transform (resize the short side, centre crop), except that an open_clip backbone trained with
    another ``resize_mode`` gets its own geometry ('squash': resize to the square without a crop;
    'longest': keep the ratio, pad), as open_clip evaluates it. ``backbone`` / ``size``: another
    model's (UPL's pseudo-labellers); default the config's."""
    from ptnl import compat
    name = backbone or cfg.MODEL.BACKBONE.NAME
    if size is not None and tuple(cfg.INPUT.SIZE) != (size, size):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.INPUT.SIZE = (size, size)
    tfm = compat.build_transform(cfg, is_train=False)
    mode = open_clip_preprocess(name).get("resize_mode", "shortest") if is_open_clip(name) else "shortest"
    if tfm is None or mode == "shortest":
        return tfm
    import torchvision.transforms as T
    interp = T.InterpolationMode(cfg.INPUT.INTERPOLATION)
    hw = tuple(int(s) for s in cfg.INPUT.SIZE)
    if mode == "squash":
        geometry = [T.Resize(hw, interpolation=interp)]
    elif mode == "longest":
        from open_clip.transform import CenterCropOrPad, ResizeKeepRatio
        geometry = [ResizeKeepRatio(hw, interpolation=interp, longest=1), CenterCropOrPad(hw, fill=0)]
    else:
        raise ConfigError("open_clip backbone {} resizes with resize_mode {!r}; PTNL knows 'shortest', 'squash' and "
                          "'longest'".format(name, mode))
    rest = [t for t in tfm.transforms if not isinstance(t, (T.Resize, T.CenterCrop))]
    return T.Compose(geometry + rest)
