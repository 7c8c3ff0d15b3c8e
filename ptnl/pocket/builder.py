"""Building the pocket world: the downstream dataset generated once into the user cache (in a
temporary folder, checked against the record, renamed into place under a lock), the full ViT
pocket CLIP (``build_vit``: the shipped ViT image tower with the shipped text tower, written once
into the cache), and ``rebuild``, the pretraining recipe run again (``ptnl.pocket.pretrain``)."""
import contextlib
import os
import os.path as osp
import shutil
import sys
import tempfile
import time

from ptnl.io import atomic_write, write_json_atomic
from ptnl.pocket.evaluation import zero_shot_accuracy
from ptnl.pocket.records import (DATA, MANIFEST, PER_CLASS, SEED, SHIPPED_RECORD, SHIPPED_VIT_WEIGHTS, SHIPPED_WEIGHTS,
                                 TEMPLATE, VERSION, VIT_CLIP, VIT_MANIFEST, VIT_NAME, VIT_WEIGHTS, WEIGHTS,
                                 PocketWorldError, _versions, check_weights, images_digest, read_manifest, ship_world,
                                 shipped, tag, vit_dir, world_dir, world_identity)

def _log(msg):
    print(msg, file=sys.stderr, flush=True)


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


def generate_dataset(root, log=_log):
    """Write the downstream dataset under ``root`` and return its ``images_digest``."""
    from ptnl.pocket import pretrain, world
    start = time.time()
    ddir = world.make_dtd(root, per_class=PER_CLASS, size=pretrain.RESOLUTION, seed=SEED)
    digest = images_digest(root)
    log("Downstream dataset: {} classes x {} images in {} ({:.0f}s)".format(
        len(world.DOWNSTREAM_CLASSES), PER_CLASS, ddir, time.time() - start))
    return digest


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


def rebuild(out, steps=None, ship=False, log=_log, vit=False):
    """Run the pretraining recipe from scratch into ``out`` (``pocket.pt``, ``data/``,
    ``pocket.json``; ``vit``: the ViT image tower against the shipped text tower, ``pocket-vit.pt``
    and ``pocket-vit.json``) and return its record, with the shipped world's zero-shot accuracy
    beside it. ``ship``: make it the shipped world (maintainers; the package files are replaced)."""
    from ptnl.pocket import pretrain
    os.makedirs(out, exist_ok=True)
    digest = generate_dataset(osp.join(out, DATA), log)
    start = time.time()
    model, losses = pretrain.pretrain(seed=SEED, steps=steps, log=log, vit=vit)
    weights = pretrain.save_weights(model, osp.join(out, VIT_WEIGHTS if vit else WEIGHTS),
                                    pretrain.VISUAL if vit else "")
    recipe = dict(pretrain.VIT_DEFAULTS if vit else pretrain.DEFAULTS, **({"steps": steps} if steps else {}))
    record = make_record(weights, osp.join(out, DATA), digest, dict(
        recipe, final_loss=float(sum(losses[-100:]) / len(losses[-100:])), seconds=time.time() - start), vit=vit)
    try:
        record["shipped_zero_shot_accuracy"] = shipped(vit)["zero_shot_accuracy"]
    except (OSError, ValueError, KeyError):
        record["shipped_zero_shot_accuracy"] = None
    write_json_atomic(osp.join(out, VIT_MANIFEST if vit else MANIFEST), record)
    if ship:
        ship_world(weights, record, vit=vit)
    return record


def make_record(weights, root, images_sha256, pretraining, vit=False):
    """The record of a world: ``weights`` (a pocket CLIP file; ``vit``: a ViT image tower, measured
    with the shipped text tower), its dataset under ``root`` with that digest, how it was pretrained
    (the recipe, ``final_loss``: the mean of the last 100 steps' losses, ``seconds``), and its
    zero-shot test accuracy measured now."""
    from ptnl.clip.weights import file_digest, load_clip
    from ptnl.pocket import pretrain, world
    classes = sorted(world.DOWNSTREAM_CLASSES)
    model = weights
    if vit:
        model = vit_clip(weights, osp.join(osp.dirname(osp.abspath(weights)), VIT_CLIP))
    record = {
        "version": VERSION, "seed": SEED, "resolution": pretrain.RESOLUTION,
        "architecture": dict(pretrain.VIT_ARCH if vit else pretrain.ARCH),
        "pretraining": pretraining, "classes": classes, "template": TEMPLATE, "per_class": PER_CLASS,
        "zero_shot_accuracy": 100.0 * zero_shot_accuracy(load_clip(model), root), "chance": 100.0 / len(classes),
        "weights_sha256": file_digest(weights), "weights_bytes": osp.getsize(weights),
        "images_sha256": images_sha256, "built_with": _versions(),
    }
    if vit:  # the text tower it was trained against and is used with
        record["text_weights_sha256"] = file_digest(SHIPPED_WEIGHTS)
    return record


def vit_clip(vision_weights, path, text_weights=SHIPPED_WEIGHTS):
    """Write to ``path`` the full ViT pocket CLIP state dict: the image tower of ``vision_weights``
    (``visual.*`` keys) and everything else of the pocket CLIP ``text_weights``; returns ``path``."""
    import torch
    from ptnl.clip.weights import read_state_dict
    from ptnl.pocket.pretrain import VISUAL
    visual = torch.load(vision_weights, map_location="cpu", weights_only=True)
    if not isinstance(visual, dict) or not visual or any(not k.startswith(VISUAL) for k in visual):
        raise PocketWorldError('"{}" is not a pocket ViT image tower (a state dict of {}* keys)'.format(
            vision_weights, VISUAL))
    sd = {k: v for k, v in read_state_dict(text_weights).items() if not k.startswith(VISUAL)}
    sd.update(visual)
    atomic_write(path, lambda f: torch.save(sd, f), mode="wb")
    return path


def build_vit(cache_root=None, log=_log):
    """The ViT pocket world's manifest (as ``build``'s, for ``MODEL.BACKBONE.NAME pocket-vit``: the
    same dataset, ``weights`` the full ViT CLIP file and its ``zero_shot_accuracy``), writing that
    file into the cache first when it is not there (checked against the shipped records)."""
    from ptnl.clip.weights import file_digest, load_clip
    world_manifest = build(cache_root, log)
    folder = vit_dir(cache_root)
    path, manifest_path = osp.join(folder, VIT_CLIP), osp.join(folder, VIT_MANIFEST)
    manifest = _read_vit_manifest(path, manifest_path)
    if manifest is None:
        os.makedirs(folder, exist_ok=True)
        with _lock(folder + ".lock"):
            manifest = _read_vit_manifest(path, manifest_path)
            if manifest is None:
                record = shipped(vit=True)
                check_weights(record=shipped())
                check_weights(SHIPPED_VIT_WEIGHTS, record, vit=True)
                start = time.time()
                vit_clip(SHIPPED_VIT_WEIGHTS, path)
                acc = 100.0 * zero_shot_accuracy(load_clip(path), world_manifest["root"])
                manifest = dict(record, zero_shot_accuracy=acc, shipped_zero_shot_accuracy=record["zero_shot_accuracy"],
                                clip_sha256=file_digest(path), here=_versions(), build_seconds=time.time() - start)
                write_json_atomic(manifest_path, manifest)
                log("ViT pocket CLIP ({}) written to {}: zero-shot test accuracy {:.2f}% ({:.2f}% when "
                    "shipped)".format(VIT_NAME, path, acc, record["zero_shot_accuracy"]))
                manifest["built_now"] = True
    keep = ("images_sha256", "classes", "template", "per_class", "chance", "root", "tag")
    return dict(manifest, **{k: world_manifest[k] for k in keep if k in world_manifest},
                weights=path, folder=folder, built_now=manifest.get("built_now", False),
                weights_bytes=osp.getsize(path))


def _read_vit_manifest(path, manifest_path):
    """The manifest of a written ViT pocket CLIP, or None when either file is missing or the CLIP
    file is no longer the one written (its sha256)."""
    import json
    from ptnl.clip.weights import file_digest
    if not (osp.isfile(path) and osp.isfile(manifest_path)):
        return None
    with open(manifest_path) as f:
        manifest = json.load(f)
    return manifest if manifest.get("clip_sha256") == file_digest(path) else None


def weights_file(cache_root=None):
    """The pocket CLIP's weights file (``MODEL.BACKBONE.NAME pocket``): the shipped one."""
    return build(cache_root)["weights"]


def vit_weights_file(cache_root=None):
    """The ViT pocket CLIP's weights file (``MODEL.BACKBONE.NAME pocket-vit``), in the cache."""
    return build_vit(cache_root)["weights"]
