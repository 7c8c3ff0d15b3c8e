"""Any CLIP-family model of open_clip as a PTNL backbone: ``open_clip:ARCH/PRETRAINED`` (a tag of
open_clip's table, weights from its Hugging Face hub cache), ``open_clip:ARCH/path/to/weights`` (a
local file) or ``open_clip:NAME`` for OpenAI-format weights registered by name (``open_clip:pocket``:
converted once into an open_clip model folder). The loaded model exposes what the trainers use of
OpenAI's ``clip.model.CLIP`` (``visual``, ``token_embedding``, ``transformer``, ``ln_final``,
``text_projection``, ``logit_scale``, ``dtype``, ``encode_image``, ``encode_text``) plus its tokenizer,
``text_spec`` (start token, causal mask, pooling) and ``preprocess`` (its own input settings)."""
import difflib
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn as nn

from ptnl.clip.text import TextSpec
from ptnl.clip.weights import (LOCAL_WEIGHTS, BackboneError, WeightsNotFoundError, advance_like_openai_load,
                               downloads_off, read_state_dict, register_backbone_family, weights_digest)
from ptnl.io import atomic_write, get_logger, user_cache_dir

log = get_logger(__name__)

PREFIX = "open_clip:"
INSTALL = 'pip install -e ".[open_clip]"'
# The weights files open_clip looks for in a hub repository whose entry names none, in its order.
HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


def is_open_clip(name) -> bool:
    """Whether MODEL.BACKBONE.NAME names an open_clip backbone."""
    return isinstance(name, str) and name.startswith(PREFIX)


def require_open_clip():
    """The ``open_clip`` module, or one ``BackboneError`` saying what to install."""
    try:
        import open_clip
    except ImportError as e:
        raise BackboneError("open_clip backbones (MODEL.BACKBONE.NAME open_clip:...) need the optional package "
                           "open-clip-torch, which is not installed ({}): {}".format(e, INSTALL)) from None
    return open_clip


def open_clip_cache_dir() -> Optional[str]:
    """Where open_clip's hub weights are looked up: PTNL_OPEN_CLIP_DIR, else Hugging Face's cache
    (HF_HUB_CACHE, default ~/.cache/huggingface/hub); the Hugging Face hub layout in both."""
    return os.environ.get("PTNL_OPEN_CLIP_DIR") or None


@dataclass(frozen=True)
class OpenClipName:
    """A parsed open_clip backbone name: ``kind`` is ``tag``, ``file`` or ``converted`` (OpenAI-format
    weights registered by name)."""
    name: str
    arch: str
    pretrained: str
    kind: str

    @property
    def label(self) -> str:
        """``arch/pretrained`` (the file's base name for a file): how reports and folders show it."""
        if self.kind == "converted":
            return "open_clip/" + self.pretrained
        tail = osp.splitext(osp.basename(self.pretrained))[0] if self.kind == "file" else self.pretrained
        return "{}/{}".format(self.arch, tail)


def parse_name(name: str) -> OpenClipName:
    """``open_clip:ARCH/TAG``, ``open_clip:ARCH/path`` or ``open_clip:LOCAL`` -> ``OpenClipName``."""
    rest = name[len(PREFIX):]
    if rest in LOCAL_WEIGHTS:
        return OpenClipName(name, "", rest, "converted")
    arch, _, pretrained = rest.partition("/")
    if not arch or not pretrained:
        raise BackboneError("Backbone {!r} (MODEL.BACKBONE.NAME): expected open_clip:ARCH/PRETRAINED (e.g. "
                            "open_clip:ViT-B-32/laion2b_s34b_b79k), open_clip:ARCH/path/to/weights or open_clip:NAME of "
                            "registered weights ({})".format(name, ", ".join(LOCAL_WEIGHTS.names()) or "none"))
    path = osp.expanduser(pretrained)
    looks_like_file = osp.isfile(path) or os.sep in pretrained or pretrained.endswith(
        (".pt", ".pth", ".bin", ".safetensors"))
    return OpenClipName(name, arch, osp.abspath(path) if looks_like_file else pretrained,
                        "file" if looks_like_file else "tag")


def _check_arch(open_clip, spec: OpenClipName) -> None:
    if spec.arch not in open_clip.list_models():
        close = difflib.get_close_matches(spec.arch, open_clip.list_models(), n=5)
        raise BackboneError("Unknown open_clip architecture {!r} in {!r} (MODEL.BACKBONE.NAME){}; open_clip.list_models() "
                           "lists them (hyphens, not slashes: ViT-B-32)".format(
                               spec.arch, spec.name, ": did you mean " + ", ".join(close) if close else ""))


def _pretrained_cfg(open_clip, spec: OpenClipName) -> Dict:
    _check_arch(open_clip, spec)
    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(spec.arch)
        raise BackboneError("{!r} is not a pretrained tag of open_clip architecture {} nor a weights file (MODEL.BACKBONE.NAME "
                           "{}); its tags: {}".format(spec.pretrained, spec.arch, spec.name, ", ".join(tags) or "none"))
    return cfg


def _hub_candidates(hf_hub: str):
    repo, filename = osp.split(hf_hub.rstrip("/")) if not hf_hub.endswith("/") else (hf_hub.rstrip("/"), "")
    if not filename:
        return repo, list(HUB_FILES)
    stem = osp.splitext(filename)[0]
    return repo, ([stem + ".safetensors"] if filename.endswith((".bin", ".pth")) else []) + [filename]


def resolve_open_clip(name: str) -> str:
    """Path of the weights file of an open_clip backbone: a file as given, a registered OpenAI-format
    name converted once (``converted_dir``), or a tag's file from the hub cache (downloaded unless
    downloads are off; offline and absent: one ``WeightsNotFoundError`` naming the files and where
    to fetch them)."""
    spec = parse_name(name)
    if spec.kind == "converted":
        return osp.join(converted_dir(LOCAL_WEIGHTS[spec.pretrained]()), HUB_FILES[1])
    open_clip = require_open_clip()
    if spec.kind == "file":
        _check_arch(open_clip, spec)
        if not osp.isfile(spec.pretrained):
            raise BackboneError('open_clip weights file "{}" does not exist (MODEL.BACKBONE.NAME {})'.format(
                spec.pretrained, name))
        return spec.pretrained
    cfg = _pretrained_cfg(open_clip, spec)
    cache_dir = open_clip_cache_dir()
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        repo, files = _hub_candidates(cfg["hf_hub"])
        for f in files:
            found = try_to_load_from_cache(repo, f, cache_dir=cache_dir)
            if isinstance(found, str) and osp.isfile(found):
                return found
        where = cache_dir or "the Hugging Face cache (HF_HUB_CACHE, default ~/.cache/huggingface/hub)"
        how = ("fetch one of {} from https://huggingface.co/{} (e.g. `huggingface-cli download {} {}`) into {}, "
               "or set PTNL_OPEN_CLIP_DIR to a hub cache folder holding it".format(
                   ", ".join(files), repo, repo, files[0], where))
    else:
        target = osp.join(cache_dir or osp.expanduser("~/.cache/clip"), osp.basename(cfg["url"]))
        if osp.isfile(target):
            return target
        files, how = [osp.basename(cfg["url"])], "download {} to {}".format(cfg["url"], target)
    if downloads_off():
        raise WeightsNotFoundError("open_clip weights for {} ({}) are not cached and downloads are off (PTNL_OFFLINE / "
                                   "HF_HUB_OFFLINE): {}".format(name, ", ".join(files), how))
    try:
        return open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as e:
        raise WeightsNotFoundError("open_clip weights for {} could not be downloaded ({}): {}".format(name, e, how)) from e


# ----------------------------------------------------------------------------- OpenAI-format weights
def openai_model_cfg(sd) -> Dict:
    """open_clip's model config of an OpenAI-format CLIP state dict (as ``clip.model.build_model``
    reads its shapes), with QuickGELU as OpenAI trained it."""
    vit = "visual.proj" in sd
    if vit:
        width = sd["visual.conv1.weight"].shape[0]
        layers = len([k for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")])
        patch = sd["visual.conv1.weight"].shape[-1]
        image_size = patch * round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = {"layers": layers, "width": int(width), "patch_size": int(patch), "image_size": int(image_size)}
    else:
        counts = [len({k.split(".")[2] for k in sd if k.startswith("visual.layer{}".format(b))}) for b in (1, 2, 3, 4)]
        grid = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = {"layers": counts, "width": int(sd["visual.layer1.0.conv1.weight"].shape[0]), "image_size": grid * 32}
    width = int(sd["ln_final.weight"].shape[0])
    text = {"context_length": int(sd["positional_embedding"].shape[0]), "vocab_size": int(sd["token_embedding.weight"].shape[0]),
            "width": width, "heads": width // 64,
            "layers": len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks")})}
    return {"embed_dim": int(sd["text_projection"].shape[1]), "quick_gelu": True, "vision_cfg": vision, "text_cfg": text}


OPENAI_PREPROCESS = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                     "interpolation": "bicubic", "resize_mode": "shortest"}


def converted_dir(openai_weights: str) -> str:
    """An open_clip model folder (``open_clip_config.json`` and ``open_clip_pytorch_model.bin``, the
    layout of open_clip's ``local-dir:`` models) holding OpenAI-format weights ``openai_weights``,
    written once per file content under PTNL's cache folder."""
    folder = osp.join(user_cache_dir(), "open_clip", "converted-" + weights_digest(openai_weights)[:16])
    weights = osp.join(folder, HUB_FILES[1])
    if osp.isfile(weights) and osp.isfile(osp.join(folder, "open_clip_config.json")):
        return folder
    sd = {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(openai_weights).items()
          if k not in ("input_resolution", "context_length", "vocab_size")}
    os.makedirs(folder, exist_ok=True)
    atomic_write(weights, lambda f: torch.save(sd, f), mode="wb")
    config = {"model_cfg": openai_model_cfg(sd), "preprocess_cfg": dict(OPENAI_PREPROCESS),
              "converted_from": osp.abspath(openai_weights)}
    atomic_write(osp.join(folder, "open_clip_config.json"), lambda f: json.dump(config, f, indent=1))
    log.info("Converted OpenAI-format weights {} into the open_clip model folder {}".format(openai_weights, folder))
    return folder


# ----------------------------------------------------------------------------- preprocessing
def _model_cfg(open_clip, spec: OpenClipName, weights: Optional[str]) -> Dict:
    if spec.kind == "converted":
        with open(osp.join(osp.dirname(weights), "open_clip_config.json")) as f:
            return json.load(f)["model_cfg"]
    return open_clip.get_model_config(spec.arch)


def _size(model_cfg: Dict) -> int:
    size = model_cfg["vision_cfg"].get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def open_clip_preprocess(name: str) -> Dict:
    """The input an open_clip backbone was trained with, without building it: ``size``, ``mean``,
    ``std``, ``interpolation``, ``resize_mode``. A tag: its pretrained entry; a converted OpenAI-format
    file: OpenAI's; a local file: the values its architecture's tags agree on, else open_clip's
    defaults (OpenAI's), which open_clip itself gives a file."""
    open_clip = require_open_clip()
    spec = parse_name(name)
    weights = resolve_open_clip(name) if spec.kind == "converted" else None
    if spec.kind != "converted":
        _check_arch(open_clip, spec)
    from open_clip.transform import PreprocessCfg
    base = PreprocessCfg()
    out = {"mean": list(base.mean), "std": list(base.std), "interpolation": base.interpolation,
           "resize_mode": base.resize_mode}
    if spec.kind == "tag":
        found = [_pretrained_cfg(open_clip, spec)]
    elif spec.kind == "file":
        found = [open_clip.get_pretrained_cfg(spec.arch, t) for t in open_clip.list_pretrained_tags_by_model(spec.arch)]
        values = {json.dumps({k: c[k] for k in PREPROCESS_KEYS if k in c}, sort_keys=True) for c in found}
        if len(values) > 1:
            log.info("The pretrained tags of {} differ in preprocessing: the weights file {} gets open_clip's defaults".format(
                spec.arch, spec.pretrained))
            found = []
    else:
        found = [OPENAI_PREPROCESS]
    for cfg in found:
        out.update({k: (list(cfg[k]) if isinstance(cfg[k], (list, tuple)) else cfg[k]) for k in PREPROCESS_KEYS if k in cfg})
    out["size"] = _size(_model_cfg(open_clip, spec, weights))
    return out


# ----------------------------------------------------------------------------- the model
def _count_tokens(tokenizer, text: str) -> int:
    if hasattr(tokenizer, "encode") and hasattr(tokenizer, "sot_token_id"):  # open_clip's SimpleTokenizer
        return len(tokenizer.encode(text))
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None:  # HFTokenizer: its cleaning, then the tokens without special ones
        clean = getattr(tokenizer, "clean_fn", lambda t: t)
        return len(inner(clean(text), add_special_tokens=False)["input_ids"])
    counter = getattr(tokenizer, "count_tokens", None)
    if counter is None:
        raise BackboneError("Cannot count the tokens of a prompt with the tokenizer {}".format(type(tokenizer).__name__))
    return counter(text)


def start_tokens(tokenize) -> int:
    """How many special tokens a tokenizer puts before the text: the leading ids two different
    one-word texts share (1: CLIP's start-of-text; 0: SigLIP's tokenizers)."""
    a, b = tokenize(["dog", "cat"])
    n = 0
    while n < len(a) and a[n] == b[n]:
        n += 1
    return n


class OpenClipModel(nn.Module):
    """An open_clip model with the attributes of OpenAI's ``clip.model.CLIP`` the trainers read, its
    tokenizer (``tokenize``, ``count_tokens``), ``text_spec`` and ``preprocess``."""

    def __init__(self, model, tokenizer, preprocess: Dict, weights_path: str, label: str):
        super().__init__()
        self.model = model
        if getattr(model, "text", None) is not None and not hasattr(model.text, "token_embedding"):
            raise BackboneError("open_clip backbone {} has a Hugging Face text tower: the prompt trainers need open_clip's "
                               "own TextTransformer (CLIP, EVA, SigLIP, ...)".format(label))
        text = self._text
        if getattr(text, "cls_emb", None) is not None:
            raise BackboneError("open_clip backbone {} appends a class token to its text (CoCa): not supported by the "
                               "prompt trainers".format(label))
        self._tokenizer = tokenizer
        self.context_length = int(text.positional_embedding.shape[0])
        pool = getattr(text, "pool_type", None) or getattr(model, "text_pool_type", "argmax")
        eos = getattr(text, "eos_id", None) if hasattr(text, "eos_id") else getattr(model, "text_eos_id", None)
        causal = (getattr(text, "attn_mask", None) if text is not model else model.attn_mask) is not None
        self.text_spec = TextSpec(context_length=self.context_length, start_tokens=start_tokens(self.tokenize),
                                  causal=causal, pool=pool, eos_id=-1 if eos is None else int(eos))
        self.preprocess = dict(preprocess)
        self.weights_path = weights_path
        self.backbone_label = label
        model.visual.input_resolution = int(preprocess["size"])

    @property
    def _text(self):
        return getattr(self.model, "text", None) or self.model

    # the attributes of OpenAI's CLIP the trainers read
    visual = property(lambda self: self.model.visual)
    token_embedding = property(lambda self: self._text.token_embedding)
    positional_embedding = property(lambda self: self._text.positional_embedding)
    transformer = property(lambda self: self._text.transformer)
    ln_final = property(lambda self: self._text.ln_final)
    text_projection = property(lambda self: self._text.text_projection)
    logit_scale = property(lambda self: self.model.logit_scale)
    logit_bias = property(lambda self: getattr(self.model, "logit_bias", None))

    @property
    def dtype(self):
        return self.transformer.get_cast_dtype()

    @property
    def embed_dim(self) -> int:
        proj = self.text_projection
        if proj is None:
            return int(self.ln_final.weight.shape[0])
        return int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1])

    def tokenize(self, texts):
        """Token ids [len(texts), context_length] by the model's own tokenizer."""
        return self._tokenizer(list(texts), context_length=self.context_length)

    def count_tokens(self, text: str) -> int:
        return _count_tokens(self._tokenizer, text)

    def encode_image(self, image):
        return self.model.encode_image(image)

    def encode_text(self, text):
        return self.model.encode_text(text)


def load_open_clip(name: str, *, device="cpu", prec: str = "fp32") -> OpenClipModel:
    """An open_clip backbone (see the module docstring) in eval mode, with ``weights_path`` set.

    Args:
        name: ``open_clip:...``.
        device: where to put it.
        prec: ``fp16`` builds it in half precision (CUDA only); otherwise fp32.

    Building it leaves the torch generator where it was (open_clip's random initialisation, which the
    weights overwrite, draws nothing a run sees); converted OpenAI-format weights then move it as
    openai-clip's loader does, so a run draws the same context either way.
    """
    open_clip = require_open_clip()
    spec = parse_name(name)
    weights = resolve_open_clip(name)
    preprocess = open_clip_preprocess(name)
    precision = "fp16" if prec == "fp16" and torch.device(device).type == "cuda" else "fp32"
    state = torch.get_rng_state()
    try:
        if spec.kind == "converted":
            model = open_clip.create_model("local-dir:" + osp.dirname(weights), precision=precision, device=device)
            tokenizer = open_clip.get_tokenizer("local-dir:" + osp.dirname(weights))
        else:
            model = open_clip.create_model(spec.arch, pretrained=weights, precision=precision, device=device,
                                           cache_dir=open_clip_cache_dir())
            tokenizer = open_clip.get_tokenizer(spec.arch, cache_dir=open_clip_cache_dir())
    except (RuntimeError, KeyError, ValueError) as e:
        raise BackboneError('Cannot load open_clip backbone {} from "{}": {}'.format(name, weights, e)) from e
    finally:
        torch.set_rng_state(state)
    if spec.kind == "converted":
        advance_like_openai_load(LOCAL_WEIGHTS[spec.pretrained]())
    wrapped = OpenClipModel(model, tokenizer, preprocess, weights, spec.label).to(device).eval()
    return wrapped


def backbone_label(name: str) -> str:
    """How reports and run folders show a backbone: ``arch/pretrained`` for open_clip names, the name
    itself otherwise."""
    return parse_name(name).label if is_open_clip(name) else name


register_backbone_family(PREFIX, resolve_open_clip, load_open_clip)
