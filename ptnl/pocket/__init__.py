"""The pocket world: a small CLIP that this project pretrains itself, on procedurally drawn
textures and their captions, and a downstream few-shot dataset in CoOp's DTD layout whose class
names are words that model has learned. For demos and tests where OpenAI's weights and the
benchmark datasets cannot be downloaded, and where random weights would make every accuracy
meaningless.

    python -m ptnl.pocket          # build (or find) it; print the weights file, --root and zero-shot accuracy

Built on first use into ``<ptnl user cache>/pocket/<tag>/`` (``PTNL_CACHE_DIR`` honoured):
``pocket.pt`` (a CLIP state dict, loadable by ``ptnl.clip.load_clip`` and by the name
``pocket``, which this module registers), ``data/dtd/...`` (pass ``data`` as ``--root``) and ``pocket.json`` (what was built,
how, and its zero-shot accuracy). The tag changes whenever the generator or the recipe does.
"""
import contextlib
import hashlib
import json
import os
import os.path as osp
import shutil
import sys
import tempfile
import time

from ptnl.clip.weights import register_weights
from ptnl.io import user_cache_dir

VERSION = 1
SEED = 0
MANIFEST = "pocket.json"
WEIGHTS = "pocket.pt"
DATA = "data"
PER_CLASS = 100  # downstream images per class: CoOp's 50/20/30 split -> 50 train, 20 val, 30 test
TEMPLATE = "{} texture."  # CoOp's DescribableTextures template


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def tag():
    """``v<VERSION>-<digest>``: the digest of the generator's and the recipe's source, so that a
    changed world is never mistaken for a cached one."""
    h = hashlib.sha256()
    here = osp.dirname(osp.abspath(__file__))
    for name in ("world.py", "pretrain.py"):
        with open(osp.join(here, name), "rb") as f:
            h.update(f.read())
    h.update(json.dumps({"seed": SEED, "per_class": PER_CLASS, "template": TEMPLATE}).encode())
    return "v{}-{}".format(VERSION, h.hexdigest()[:10])


def world_dir(cache_root=None):
    """The folder of the pocket world under ``cache_root`` (default: PTNL's user cache)."""
    return osp.join(cache_root or user_cache_dir(), "pocket", tag())


def read_manifest(folder):
    path = osp.join(folder, MANIFEST)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        manifest = json.load(f)
    manifest.update(weights=osp.join(folder, WEIGHTS), root=osp.join(folder, DATA), folder=folder)
    return manifest


@contextlib.contextmanager
def _lock(path):
    """An exclusive file lock where the OS has one; elsewhere builders race and the first rename wins."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(cache_root=None, log=_log):
    """The pocket world's manifest (a dict with ``weights``, ``root``, ``resolution``,
    ``zero_shot_accuracy``, ``chance``, ...), building it first when it is not in the cache.

    The world is built in a temporary folder next to its final place and renamed into place at the
    very end, so an interrupted build leaves nothing that is later mistaken for a world. Builders
    in other processes wait on a lock and then find the world built."""
    folder = world_dir(cache_root)
    manifest = read_manifest(folder)
    if manifest is not None:
        return manifest
    parent = osp.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    with _lock(folder + ".lock") as exclusive:
        manifest = read_manifest(folder)
        if manifest is not None:
            return manifest
        if exclusive:  # under the lock, a temporary folder left here is an interrupted build's
            for name in os.listdir(parent):
                if name.startswith(".build-"):
                    shutil.rmtree(osp.join(parent, name), ignore_errors=True)
        log("Building the pocket world into {} (once; a few minutes on a laptop CPU)".format(folder))
        tmp = tempfile.mkdtemp(dir=parent, prefix=".build-")
        try:
            _build_into(tmp, log)
            os.chmod(tmp, 0o755)  # mkdtemp's folder is private; a world is not
            try:
                os.rename(tmp, folder)
            except OSError:  # another builder (without a lock) got there first
                if read_manifest(folder) is None:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return read_manifest(folder)


def _build_into(folder, log):
    from ptnl.pocket import pretrain, world
    from ptnl.clip.weights import file_digest, load_clip
    start = time.time()
    ddir = world.make_dtd(osp.join(folder, DATA), per_class=PER_CLASS, size=pretrain.RESOLUTION, seed=SEED)
    log("Downstream dataset: {} classes x {} images in {} ({:.0f}s)".format(
        len(world.DOWNSTREAM_CLASSES), PER_CLASS, ddir, time.time() - start))
    dataset_s = time.time() - start
    model, losses = pretrain.pretrain(seed=SEED, log=log)
    weights = pretrain.save_weights(model, osp.join(folder, WEIGHTS))
    pretrain_s = time.time() - start - dataset_s
    acc = zero_shot_accuracy(load_clip(weights), osp.join(folder, DATA))
    classes = sorted(world.DOWNSTREAM_CLASSES)
    manifest = {
        "version": VERSION, "tag": tag(), "seed": SEED,
        "resolution": pretrain.RESOLUTION, "architecture": {k: v for k, v in pretrain.ARCH.items()},
        "pretraining": dict(pretrain.DEFAULTS, final_loss=float(sum(losses[-20:]) / len(losses[-20:]))),
        "classes": classes, "template": TEMPLATE, "per_class": PER_CLASS,
        "zero_shot_accuracy": 100.0 * acc, "chance": 100.0 / len(classes),
        "weights_sha256": file_digest(weights), "weights_bytes": osp.getsize(weights),
        "build_seconds": time.time() - start, "dataset_seconds": dataset_s, "pretrain_seconds": pretrain_s,
    }
    with open(osp.join(folder, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
    log("Pocket world built in {:.0f}s: zero-shot test accuracy {:.1f}% (chance {:.1f}%)".format(
        manifest["build_seconds"], manifest["zero_shot_accuracy"], manifest["chance"]))
    return manifest


def weights_file(cache_root=None):
    """The pocket CLIP's weights file, built first when needed (``MODEL.BACKBONE.NAME pocket``)."""
    return build(cache_root)["weights"]


@register_weights("pocket")
def _pocket_weights():
    return weights_file()


# ----------------------------------------------------------------------------- evaluation helpers
def test_transform(resolution=None):
    """The trainers' test transform (resize the short side, centre crop, CLIP's normalisation)."""
    import torchvision.transforms as T
    from ptnl.pocket.pretrain import MEAN, RESOLUTION, STD
    r = resolution or RESOLUTION
    return T.Compose([T.Resize(r, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(r), T.ToTensor(),
                      T.Normalize(MEAN, STD)])


def read_split(root, split="test"):
    """(image paths, labels, class names) of a split of the pocket dataset under ``root``."""
    ddir = osp.join(root, "dtd")
    with open(osp.join(ddir, "split_zhou_DescribableTextures.json")) as f:
        items = json.load(f)[split]
    names = {}
    for _, label, name in items:
        names[int(label)] = name
    return ([osp.join(ddir, "images", p) for p, _, _ in items], [int(y) for _, y, _ in items],
            [names[k] for k in sorted(names)])


def image_features(model, paths, batch_size=200):
    """L2-normalised image features [N, D] of ``paths`` under the test transform."""
    from ptnl.clip.features import image_features as encoded
    return encoded(lambda x: model.encode_image(x.type(model.dtype)), paths,
                   test_transform(model.visual.input_resolution), model.logit_scale.device, batch_size)


def zero_shot_accuracy(model, root, template=TEMPLATE, split="test", classnames=None):
    """Zero-shot accuracy (a fraction) of ``model`` on a split of the pocket dataset, with the
    class prompts ``template.format(name)``; ``classnames`` overrides the prompts' names (label k
    is scored against ``classnames[k]``)."""
    import torch
    from ptnl.clip.features import text_classifier
    paths, labels, names = read_split(root, split)
    text = text_classifier(model, classnames or names, [template])
    pred = (image_features(model, paths) @ text.t()).argmax(dim=1)
    return float((pred == torch.tensor(labels)).float().mean())
