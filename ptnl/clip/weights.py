"""CLIP by name or by file: one loader for every trainer.

Names are OpenAI's releases (downloaded into ``clip_cache_dir()`` unless downloads are off) or
local weights registered with ``register_weights``: a function that returns the weights file
(building it on first use). The loader knows no local name itself; ``ptnl.pocket`` registers
``pocket`` when imported (``ptnl.plugins`` imports it for the trainers and ``train.py``). Names
starting with a registered prefix (``register_backbone_family``: ``open_clip:``, by
``ptnl.clip.open_clip_backbone``) are resolved and loaded by that family.
"""
import contextlib
import hashlib
import os
import os.path as osp
import threading
import warnings
import zipfile
from typing import Callable, Dict, List, Tuple

import torch

from ptnl.errors import PTNLError
from ptnl.io import cache
from ptnl.registry import Registry

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # openai-clip imports the deprecated pkg_resources
    from clip import clip as _clip_module
    from clip.model import build_model

# Pretrained weights by name: the OpenAI release (url, whose path holds the file's sha256).
PRETRAINED = dict(_clip_module._MODELS)


class BackboneError(PTNLError, ValueError):
    """An unknown backbone name or unusable weights file."""


class WeightsNotFoundError(PTNLError, FileNotFoundError):
    """Named CLIP weights are not cached and cannot be downloaded."""


# Weights this project builds itself, by name: a function returning the file (built on first use).
LOCAL_WEIGHTS = Registry("local weights", "MODEL.BACKBONE.NAME", error=BackboneError)


# Backbone families named by a prefix ("open_clip:"): prefix -> (resolve(name) -> path, load(name, device, prec)).
FAMILIES: Dict[str, Tuple[Callable, Callable]] = {}


def register_backbone_family(prefix: str, resolve: Callable, load: Callable) -> None:
    """Names starting with ``prefix`` are resolved by ``resolve(name) -> weights file`` and loaded by
    ``load(name, device=, prec=) -> model`` (with OpenAI CLIP's attributes; see ``ptnl.clip.text``)."""
    FAMILIES[prefix] = (resolve, load)


def _family(name):
    return next((f for p, f in FAMILIES.items() if isinstance(name, str) and name.startswith(p)), None)


def register_weights(name: str, **meta) -> Callable:
    """Decorator: ``fn() -> path`` provides the weights file of the local backbone ``name``;
    ``resolution=`` (an int, or a function returning it) tells its input size without building it."""
    return LOCAL_WEIGHTS.register(name, **meta)


def available_models() -> List[str]:
    """Every CLIP name ``load_clip`` accepts: OpenAI's, then the registered local ones."""
    return list(PRETRAINED.keys()) + LOCAL_WEIGHTS.names()


def clip_cache_dir() -> str:
    """Where named weights are downloaded and looked up (openai-clip's default folder)."""
    return os.environ.get("PTNL_CLIP_DIR") or osp.expanduser("~/.cache/clip")


def downloads_off() -> bool:
    """True when nothing may be downloaded (PTNL_OFFLINE or HF_HUB_OFFLINE set, not 0)."""
    return os.environ.get("PTNL_OFFLINE", "") not in ("", "0") or \
        os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def resolve_weights(name_or_path: str) -> str:
    """Path of the weights file of a CLIP.

    Args:
        name_or_path: an OpenAI name (downloaded into the cache when absent), a registered local
            name (built on first use) or a file path.

    Raises ``BackboneError`` for an unknown name and ``WeightsNotFoundError`` when the file is
    missing and cannot be fetched.
    """
    if osp.isfile(osp.expanduser(name_or_path)):
        return osp.abspath(osp.expanduser(name_or_path))
    if _family(name_or_path):
        return _family(name_or_path)[0](name_or_path)
    if name_or_path in LOCAL_WEIGHTS:
        return LOCAL_WEIGHTS[name_or_path]()
    if name_or_path not in PRETRAINED:
        if os.sep in name_or_path or name_or_path.endswith((".pt", ".pth", ".bin")):
            raise BackboneError('CLIP weights file "{}" does not exist (MODEL.BACKBONE.NAME)'.format(name_or_path))
        raise BackboneError("Unknown backbone {!r} (MODEL.BACKBONE.NAME): expected one of {}, a path "
                            "to a weights file or open_clip:ARCH/PRETRAINED".format(
                                name_or_path, ", ".join(available_models())))
    url = PRETRAINED[name_or_path]
    root = clip_cache_dir()
    target = osp.join(root, osp.basename(url))
    if osp.isfile(target):
        return target
    how = ('Download {} and place it at "{}" (or set PTNL_CLIP_DIR to the folder holding it, or '
           "pass the file path as MODEL.BACKBONE.NAME).".format(url, target))
    if downloads_off():
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


def read_state_dict(path: str, *, shapes_only: bool = False) -> Dict[str, torch.Tensor]:
    """State dict of a TorchScript CLIP archive or of a saved state dict. ``shapes_only``: a saved
    (zip-format) state dict is memory-mapped, not read, for a caller that looks at shapes only (the
    input resolution at config time; the run reads the file once, when it builds the model)."""
    if _is_torchscript(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load is deprecated, still the format
            return torch.jit.load(path, map_location="cpu").state_dict()
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=shapes_only and zipfile.is_zipfile(path))
    except Exception as e:
        raise BackboneError('Cannot read CLIP weights from "{}": neither a TorchScript archive nor a '
                            "state dict ({})".format(path, e)) from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "text_projection" not in sd:
        raise BackboneError('"{}" is not a CLIP state dict (no text_projection)'.format(path))
    return sd


def file_digest(path: str, chunk: int = 1 << 20) -> str:
    """sha256 of a file: the identity of a weights file in cache keys."""
    return cache.file_sha256(path, chunk)


_DIGESTS: Dict[Tuple, str] = {}


_DIGESTING: Dict[Tuple, threading.Thread] = {}


def weights_digest(path: str) -> str:
    """sha256 of a weights file, memoised (in memory and in the cache folder) on its path, size
    and modification time, so a run does not re-read hundreds of MB to name its cache entries."""
    st = os.stat(path)
    memo = (osp.abspath(path), st.st_size, st.st_mtime_ns)
    running = _DIGESTING.get(memo)
    if running is not None and running is not threading.current_thread():
        running.join()  # prefetch_weights_digest's thread: its answer, not a second read
    if memo not in _DIGESTS:
        key = cache.cache_key(kind="file_digest", path=memo[0], size=memo[1], mtime_ns=memo[2])
        stored = cache.load(key)
        if stored is None:
            stored = {"sha256": file_digest(path)}
            cache.save(key, stored)
        _DIGESTS[memo] = stored["sha256"]
    return _DIGESTS[memo]


def prefetch_weights_digest(path: str) -> None:
    """Start ``weights_digest(path)`` in a thread when it is not known yet: a cold run hashes the file
    (hashlib releases the GIL) while CLIP's initialisation draws keep one core busy, instead of
    before its first evaluation. Reading the digest later waits for the thread."""
    st = os.stat(path)
    memo = (osp.abspath(path), st.st_size, st.st_mtime_ns)
    running = _DIGESTING.get(memo)
    if memo in _DIGESTS or (running is not None and running.is_alive()):
        return
    def work():
        try:
            weights_digest(path)
        except Exception:  # noqa: BLE001  (the caller's own weights_digest reads again and reports it)
            pass
    thread = threading.Thread(target=work, name="ptnl-weights-digest", daemon=True)
    _DIGESTING[memo] = thread
    thread.start()


def same_weights(a: str, b: str) -> bool:
    """Whether MODEL.BACKBONE.NAME values ``a`` and ``b`` name the same weights: equal names, or two
    files with one sha256 (a trained run's weights file, moved or copied since). Nothing downloads."""
    if a == b:
        return True
    files = [osp.expanduser(x) for x in (a, b) if isinstance(x, str)]
    return len(files) == 2 and all(osp.isfile(f) for f in files) and weights_digest(files[0]) == weights_digest(files[1])


def load_clip(name_or_path: str, *, device="cpu", prec: str = "fp32"):
    """CLIP (``clip.model.CLIP``) in eval mode, frozen-ready, with ``weights_path`` set.

    Args:
        name_or_path: see ``resolve_weights``.
        device: where to put it.
        prec: ``fp16`` keeps CLIP's half weights (CUDA only); fp32, amp and bf16 (autocast) get
            fp32 weights. On CPU the weights are always fp32.
    """
    if _family(name_or_path):
        return _family(name_or_path)[1](name_or_path, device=device, prec=prec)
    path = resolve_weights(name_or_path)
    shared = _SHARED.get("models")
    if shared is not None:  # inside shared_loads(): one model per (weights, device, precision, generator state)
        key = (path, str(torch.device(device)), prec, _torch_rng_digest())
        if key in shared:
            model, after = shared[key]
            torch.set_rng_state(after)  # the draws building it made, as if it had been built again
            return model
    prefetch_weights_digest(path)  # the feature cache's key, hashed beside the initialisation draws
    model = _build(read_state_dict(path), half=prec == "fp16" and torch.device(device).type == "cuda")
    model.weights_path = path
    model = model.to(device).eval()
    if shared is not None:
        shared[key] = (model, torch.get_rng_state())
    return model


def _build(sd, half: bool):
    """``clip.model.build_model`` (the same modules, initialisation draws and values), in fp16 where
    ``half`` else fp32. A release is stored in fp16; for fp32 its conversion to fp16 and back is
    skipped (fp16 numbers are exact in fp32), which saves about 1.5 s of a ViT-B/32 start on CPU.
    Files with other float types take build_model's own path (it rounds its weights to fp16).

    CLIP's random initialisation only moves the torch generator (every value is then overwritten
    by the file's), and CoOp's context draws come after it. Where the generator state it ends in
    is cached for this architecture, torch, clip and starting state, the modules are made without
    initialising them and the generator is set to that state: the same model and draws, a second
    less (ViT-B/32, CPU)."""
    rounds = half or not all(t.dtype == torch.float16 for t in sd.values() if t.is_floating_point())
    key = _init_draws_key(sd, half)
    after = cache.load(key)
    import clip.model as clip_model
    convert = clip_model.convert_weights
    if not rounds:
        clip_model.convert_weights = lambda model: None  # fp32 modules take the fp16 values as they are
    try:
        if after is None:
            model = build_model(sd)
        else:
            with torch.device("meta"), warnings.catch_warnings():  # modules without values: no draws, no arithmetic
                warnings.filterwarnings("ignore", message=".*to a meta parameter")  # its load: values come below
                model = build_model(sd)
    finally:
        clip_model.convert_weights = convert
    if after is None:
        cache.save(key, torch.get_rng_state())
    else:
        model = model.to_empty(device="cpu")
        model.load_state_dict(sd)
        for block in model.transformer.resblocks:  # not a buffer: built on the meta device above
            block.attn_mask = model.build_attention_mask()
        torch.set_rng_state(after)
    return model.float() if rounds and not half else model


def advance_like_openai_load(path: str) -> None:
    """Move the torch generator as ``load_clip`` of the OpenAI-format weights file ``path`` does (CLIP's
    initialisation draws), without keeping the model: another loader of the same weights then leaves
    the same generator state, so the runs draw the same context."""
    _build(read_state_dict(path), half=False)


def _init_draws_key(sd, half):
    """Cache key of the generator state CLIP's initialisation leaves: the architecture (names,
    shapes, dtypes), torch, clip's model code and the generator state it starts from."""
    import clip.model as clip_model
    with open(clip_model.__file__, "rb") as f:
        code = hashlib.sha256(f.read()).hexdigest()
    arch = hashlib.sha256(repr([(k, tuple(v.shape), str(v.dtype)) for k, v in sorted(sd.items())]).encode())
    return cache.cache_key(kind="clip_init_draws", architecture=arch.hexdigest(), half=half, clip_model=code,
                           torch=torch.__version__, generator=_torch_rng_digest())


_SHARED: Dict[str, dict] = {}


def _torch_rng_digest() -> str:
    return hashlib.sha1(torch.get_rng_state().numpy().tobytes()).hexdigest()


@contextlib.contextmanager
def shared_loads():
    """Within the block, ``load_clip`` builds a model once per (weights, device, precision, torch
    generator state) and returns that same object again, leaving the generator where building it
    left it: runs built one after another in one process (grouped runs) share frozen encoders and
    draw exactly what each would draw alone. Only for trainers that never change CLIP's weights."""
    saved = _SHARED.get("models")
    _SHARED["models"] = {} if saved is None else saved
    try:
        yield
    finally:
        if saved is None:
            _SHARED.pop("models", None)


def effective_precision(prec: str, device) -> str:
    """fp16 and amp need CUDA (elsewhere the run is fp32); bf16 (autocast) runs on CPU and CUDA."""
    return prec if prec == "bf16" or torch.device(device).type == "cuda" else "fp32"
