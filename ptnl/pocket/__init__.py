"""The pocket world: a small CLIP pretrained by this project on procedurally drawn textures and
their captions, shipped with the package, and a downstream few-shot dataset in CoOp's DTD layout,
generated on first use, whose class names that model has learned. For demos and tests where
OpenAI's weights and the benchmark datasets cannot be downloaded, and where random weights would
make every accuracy meaningless.

    python -m ptnl.pocket             # generate the dataset (or find it); print weights, --root, zero-shot accuracy
    python -m ptnl.pocket --rebuild   # run the pretraining recipe again and compare with the shipped weights

One world everywhere: pretraining runs 1000 optimiser steps whose float arithmetic depends on the
CPU's vector units (oneDNN/MKL pick kernels by ISA), so two machines that pretrain get two
different models. The weights are therefore built once and shipped (``pocket.pt``, fp16, with
their sha256 in ``pocket.json``); ``--rebuild`` keeps the recipe honest by comparing the rebuilt
model's zero-shot accuracy with the shipped one's. The images are generated in float64 numpy,
whose results do not depend on the SIMD level, and their sha256 is checked against the record.

The dataset goes to ``<ptnl user cache>/pocket/<tag>/`` (``PTNL_CACHE_DIR`` honoured):
``data/dtd/...`` (pass ``data`` as ``--root``) and ``pocket.json`` (the shipped record plus what
was measured here). The tag changes with the generator or the weights. This module registers the
weights name ``pocket`` with ``ptnl.clip``'s loader.
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
from ptnl.errors import PTNLError
from ptnl.io import atomic_write, cache, user_cache_dir, write_json_atomic

VERSION = 2
SEED = 0
MANIFEST = "pocket.json"
WEIGHTS = "pocket.pt"
DATA = "data"
PER_CLASS = 100  # downstream images per class: CoOp's 50/20/30 split -> 50 train, 20 val, 30 test
TEMPLATE = "{} texture."  # CoOp's DescribableTextures template
PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
SHIPPED_WEIGHTS = osp.join(PACKAGE_DIR, WEIGHTS)
SHIPPED_RECORD = osp.join(PACKAGE_DIR, MANIFEST)
# |rebuilt - shipped| zero-shot accuracy (points) above which ``--rebuild`` says the recipe drifted.
# Rebuilds differ by float paths alone: the previous recipe gave 43.6% on one x86 CPU and 50.0% on
# another (AVX-512), 6.4 points apart.
REBUILD_TOLERANCE = 8.0


class PocketWorldError(PTNLError, RuntimeError):
    """The generated dataset or the shipped weights are not the recorded ones."""


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def shipped():
    """The record of the shipped world (``pocket.json`` beside this file): recipe, sha256 of the
    weights and of the image set, zero-shot accuracy measured when it was built."""
    with open(SHIPPED_RECORD) as f:
        return json.load(f)


def tag():
    """``v<VERSION>-<digest>``: the digest of the dataset generator's source, of the shipped
    weights' sha256 and of the dataset's settings, so that a changed world is never mistaken for
    a cached one."""
    h = hashlib.sha256()
    with open(osp.join(PACKAGE_DIR, "world.py"), "rb") as f:
        h.update(f.read())
    h.update(json.dumps({"seed": SEED, "per_class": PER_CLASS, "template": TEMPLATE,
                         "weights": shipped()["weights_sha256"]}).encode())
    return "v{}-{}".format(VERSION, h.hexdigest()[:10])


def world_dir(cache_root=None):
    """The folder of the pocket world under ``cache_root`` (default: PTNL's user cache)."""
    return osp.join(cache_root or user_cache_dir(), "pocket", tag())


def read_manifest(folder):
    """The world's manifest, or None when there is none or when the dataset's files are no longer
    the recorded ones (``world_is_recorded``): such a world is generated again."""
    path = osp.join(folder, MANIFEST)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        manifest = json.load(f)
    if not world_is_recorded(manifest, osp.join(folder, DATA), path):
        return None
    manifest.update(weights=SHIPPED_WEIGHTS, root=osp.join(folder, DATA), folder=folder, built_now=False)
    return manifest


def world_files(root):
    """The files of the generated dataset under ``root``, in a fixed order: the split file and the
    images; not what runs add later (few-shot caches)."""
    ddir = osp.join(root, "dtd")
    files = [osp.join(ddir, "split_zhou_DescribableTextures.json")]
    for dirpath, dirnames, filenames in os.walk(osp.join(ddir, "images")):
        dirnames.sort()
        files += [osp.join(dirpath, name) for name in sorted(filenames)]
    return files


def images_digest(root):
    """sha256 of the generated dataset under ``root``: the images (relative paths, sorted, and
    bytes) and the split file; not what runs add later (few-shot caches)."""
    h = hashlib.sha256()
    for path in world_files(root):
        h.update(osp.relpath(path, root).replace(os.sep, "/").encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def world_identity(root):
    """``ptnl.io.cache.files_identity`` (size and mtime) of the dataset's files, with paths relative
    to ``root`` (the record stays true when the build folder is renamed into place)."""
    files = cache.files_identity(world_files(root))
    files["paths"] = [osp.relpath(p, root).replace(os.sep, "/") for p in files["paths"]]
    return files


def world_is_recorded(manifest, root, manifest_path=None):
    """Whether the dataset under ``root`` is the one ``manifest`` records: its files' identities
    (size and mtime) as recorded, else (files touched, copied, or a manifest from before the
    identities were kept) its ``images_sha256``, after which the identities are recorded afresh in
    ``manifest_path``. A manifest without a digest has nothing to check."""
    if "images_sha256" not in manifest:
        return True
    files = manifest.get("files")
    if isinstance(files, dict) and files.get("paths") and not cache.changed_files(
            dict(files, paths=[osp.join(root, p) for p in files["paths"]])):
        if len(files["paths"]) == len(world_files(root)):  # and nothing was added
            return True
    try:
        if images_digest(root) != manifest["images_sha256"]:
            return False
    except OSError:  # a file of the record is gone
        return False
    if manifest_path:
        try:
            write_json_atomic(manifest_path, dict(manifest, files=world_identity(root)))
        except OSError:  # a read-only world is checked by content each time
            pass
    return True


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
    ``zero_shot_accuracy``, ``chance``, ``built_now``, ...), generating the dataset first when it
    is not in the cache.

    The dataset is generated in a temporary folder next to its final place, checked against the
    recorded sha256 and renamed into place at the very end, so an interrupted or wrong build
    leaves nothing that is later mistaken for a world. Builders in other processes wait on a lock
    and then find the world built."""
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
        if osp.isdir(folder):  # a world whose files are no longer the recorded ones (read_manifest)
            log("The pocket dataset in {} is not the recorded one (files changed since it was built); "
                "generating it again".format(folder))
            aside = tempfile.mkdtemp(dir=parent, prefix=".build-stale-")
            os.rename(folder, osp.join(aside, "world"))
            shutil.rmtree(aside, ignore_errors=True)
        log("Generating the pocket dataset into {} (once)".format(folder))
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
    manifest = read_manifest(folder)
    manifest["built_now"] = True
    return manifest


def check_weights(path=SHIPPED_WEIGHTS, record=None):
    """Raise ``PocketWorldError`` unless ``path`` is the recorded weights file."""
    from ptnl.clip.weights import file_digest
    record = record or shipped()
    if not osp.isfile(path):
        raise PocketWorldError('The pocket weights "{}" are missing: reinstall ptnl, or rebuild them with '
                               "python -m ptnl.pocket --rebuild --ship".format(path))
    digest = file_digest(path)
    if digest != record["weights_sha256"]:
        raise PocketWorldError('The pocket weights "{}" have sha256 {}, the record ({}) says {}: reinstall '
                               "ptnl".format(path, digest, SHIPPED_RECORD, record["weights_sha256"]))


def generate_dataset(root, log=_log):
    """Write the downstream dataset under ``root`` and return its ``images_digest``."""
    from ptnl.pocket import pretrain, world
    start = time.time()
    ddir = world.make_dtd(root, per_class=PER_CLASS, size=pretrain.RESOLUTION, seed=SEED)
    digest = images_digest(root)
    log("Downstream dataset: {} classes x {} images in {} ({:.0f}s)".format(
        len(world.DOWNSTREAM_CLASSES), PER_CLASS, ddir, time.time() - start))
    return digest


def _versions():
    import numpy
    import PIL
    import torch
    return {"torch": torch.__version__, "numpy": numpy.__version__, "pillow": PIL.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _build_into(folder, log):
    from ptnl.clip.weights import load_clip
    record = shipped()
    check_weights(record=record)
    start = time.time()
    digest = generate_dataset(osp.join(folder, DATA), log)
    if digest != record["images_sha256"]:
        raise PocketWorldError(
            "The pocket dataset generated on this machine has sha256 {}, the record ({}) says {}. The "
            "generator draws with numpy's PCG64 and writes JPEGs with Pillow; a numpy or Pillow release that "
            "changed a random stream or the JPEG encoder gives other images ({}; the record was made with {}). "
            "Install those versions, or rebuild the world with python -m ptnl.pocket --rebuild --ship.".format(
                digest, SHIPPED_RECORD, record["images_sha256"], _versions(), record.get("built_with")))
    acc = zero_shot_accuracy(load_clip(SHIPPED_WEIGHTS), osp.join(folder, DATA))
    manifest = dict(record, tag=tag(), zero_shot_accuracy=100.0 * acc,
                    shipped_zero_shot_accuracy=record["zero_shot_accuracy"], here=_versions(),
                    build_seconds=time.time() - start, files=world_identity(osp.join(folder, DATA)))
    write_json_atomic(osp.join(folder, MANIFEST), manifest)
    log("Pocket world ready in {:.0f}s: zero-shot test accuracy {:.2f}% (chance {:.1f}%; {:.2f}% when "
        "shipped)".format(manifest["build_seconds"], manifest["zero_shot_accuracy"], manifest["chance"],
                          record["zero_shot_accuracy"]))
    return manifest


def rebuild(out, steps=None, ship=False, log=_log):
    """Run the pretraining recipe from scratch into ``out`` (``pocket.pt``, ``data/``,
    ``pocket.json``) and return its record, with the shipped world's zero-shot accuracy beside
    it. ``ship``: make it the shipped world (maintainers; the package files are replaced)."""
    from ptnl.pocket import pretrain
    os.makedirs(out, exist_ok=True)
    digest = generate_dataset(osp.join(out, DATA), log)
    start = time.time()
    model, losses = pretrain.pretrain(seed=SEED, steps=steps, log=log)
    weights = pretrain.save_weights(model, osp.join(out, WEIGHTS))
    recipe = dict(pretrain.DEFAULTS, **({"steps": steps} if steps else {}))
    record = make_record(weights, osp.join(out, DATA), digest, dict(
        recipe, final_loss=float(sum(losses[-100:]) / len(losses[-100:])), seconds=time.time() - start))
    try:
        record["shipped_zero_shot_accuracy"] = shipped()["zero_shot_accuracy"]
    except (OSError, ValueError, KeyError):
        record["shipped_zero_shot_accuracy"] = None
    write_json_atomic(osp.join(out, MANIFEST), record)
    if ship:
        ship_world(weights, record)
    return record


def make_record(weights, root, images_sha256, pretraining):
    """The record of a world: ``weights`` (a pocket CLIP file), its dataset under ``root`` with
    that digest, how it was pretrained (the recipe, ``final_loss``: the mean of the last 100 steps'
    losses, ``seconds``), and its zero-shot test accuracy measured now."""
    from ptnl.clip.weights import file_digest, load_clip
    from ptnl.pocket import pretrain, world
    classes = sorted(world.DOWNSTREAM_CLASSES)
    return {
        "version": VERSION, "seed": SEED, "resolution": pretrain.RESOLUTION, "architecture": dict(pretrain.ARCH),
        "pretraining": pretraining, "classes": classes, "template": TEMPLATE, "per_class": PER_CLASS,
        "zero_shot_accuracy": 100.0 * zero_shot_accuracy(load_clip(weights), root), "chance": 100.0 / len(classes),
        "weights_sha256": file_digest(weights), "weights_bytes": osp.getsize(weights),
        "images_sha256": images_sha256, "built_with": _versions(),
    }


def ship_world(weights, record):
    """Make ``weights`` and ``record`` the package's pocket world (maintainers)."""
    with open(weights, "rb") as src:
        atomic_write(SHIPPED_WEIGHTS, lambda f: shutil.copyfileobj(src, f), mode="wb")
    shipped_record = {k: v for k, v in record.items() if k != "shipped_zero_shot_accuracy"}
    atomic_write(SHIPPED_RECORD, lambda f: f.write(json.dumps(shipped_record, indent=2) + "\n"))


def weights_file(cache_root=None):
    """The pocket CLIP's weights file (``MODEL.BACKBONE.NAME pocket``): the shipped one."""
    return build(cache_root)["weights"]


@register_weights("pocket", resolution=lambda: shipped()["resolution"])  # known without building the world
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
