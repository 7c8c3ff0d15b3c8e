"""Building the pocket world: the downstream dataset generated once into the user cache (in a
temporary folder, checked against the record, renamed into place under a lock), and ``rebuild``,
the pretraining recipe run again (``ptnl.pocket.pretrain``)."""
import contextlib
import os
import os.path as osp
import shutil
import sys
import tempfile
import time

from ptnl.io import write_json_atomic
from ptnl.pocket.evaluation import zero_shot_accuracy
from ptnl.pocket.records import (DATA, MANIFEST, PER_CLASS, SEED, SHIPPED_RECORD, SHIPPED_WEIGHTS, TEMPLATE, VERSION,
                                 WEIGHTS, PocketWorldError, _versions, check_weights, images_digest, read_manifest,
                                 ship_world, shipped, tag, world_dir, world_identity)

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


def weights_file(cache_root=None):
    """The pocket CLIP's weights file (``MODEL.BACKBONE.NAME pocket``): the shipped one."""
    return build(cache_root)["weights"]
