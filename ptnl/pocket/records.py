"""The pocket world's records: the shipped weights and their record (``pocket.json`` beside the
package), the tag of a generated world, its manifest, and the checks that a world on disk and a
weights file are the recorded ones."""
import hashlib
import json
import os
import os.path as osp
import shutil

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
# The ViT variant (MODEL.BACKBONE.NAME pocket-vit): only its image tower is shipped (fp16, with its
# record); the full CLIP, that tower with pocket.pt's text tower, is written once into the cache.
VIT_NAME = "pocket-vit"
VIT_WEIGHTS = "pocket-vit.pt"
VIT_MANIFEST = "pocket-vit.json"
VIT_CLIP = "pocket-vit-clip.pt"
SHIPPED_VIT_WEIGHTS = osp.join(PACKAGE_DIR, VIT_WEIGHTS)
SHIPPED_VIT_RECORD = osp.join(PACKAGE_DIR, VIT_MANIFEST)
# |rebuilt - shipped| zero-shot accuracy (points) above which ``--rebuild`` says the recipe drifted.
# Rebuilds differ by float paths alone: the previous recipe gave 43.6% on one x86 CPU and 50.0% on
# another (AVX-512), 6.4 points apart.
REBUILD_TOLERANCE = 8.0


class PocketWorldError(PTNLError, RuntimeError):
    """The generated dataset or the shipped weights are not the recorded ones."""


def shipped(vit=False):
    """The record of the shipped world (``pocket.json`` beside this file; ``vit``: the ViT image
    tower's, ``pocket-vit.json``): recipe, sha256 of the weights and of the image set, zero-shot
    accuracy measured when it was built."""
    with open(SHIPPED_VIT_RECORD if vit else SHIPPED_RECORD) as f:
        return json.load(f)


def vit_dir(cache_root=None):
    """The folder of the full ViT pocket CLIP under ``cache_root``, named by the digests of the two
    shipped files it is made of."""
    h = hashlib.sha256((shipped()["weights_sha256"] + shipped(vit=True)["weights_sha256"]).encode())
    return osp.join(cache_root or user_cache_dir(), "pocket", "vit-" + h.hexdigest()[:10])


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


def check_weights(path=SHIPPED_WEIGHTS, record=None, vit=False):
    """Raise ``PocketWorldError`` unless ``path`` is the recorded weights file (``vit``: of the ViT
    image tower)."""
    from ptnl.clip.weights import file_digest
    record = record or shipped(vit)
    if not osp.isfile(path):
        raise PocketWorldError('The pocket weights "{}" are missing: reinstall ptnl, or rebuild them with '
                               "python -m ptnl.pocket --rebuild{} --ship".format(path, " --vit" if vit else ""))
    digest = file_digest(path)
    if digest != record["weights_sha256"]:
        raise PocketWorldError('The pocket weights "{}" have sha256 {}, the record ({}) says {}: reinstall '
                               "ptnl".format(path, digest, SHIPPED_VIT_RECORD if vit else SHIPPED_RECORD,
                                             record["weights_sha256"]))


def _versions():
    import numpy
    import PIL
    import torch
    return {"torch": torch.__version__, "numpy": numpy.__version__, "pillow": PIL.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def ship_world(weights, record, vit=False):
    """Make ``weights`` and ``record`` the package's pocket world (``vit``: its ViT image tower;
    maintainers)."""
    with open(weights, "rb") as src:
        atomic_write(SHIPPED_VIT_WEIGHTS if vit else SHIPPED_WEIGHTS, lambda f: shutil.copyfileobj(src, f), mode="wb")
    shipped_record = {k: v for k, v in record.items() if k != "shipped_zero_shot_accuracy"}
    atomic_write(SHIPPED_VIT_RECORD if vit else SHIPPED_RECORD,
                 lambda f: f.write(json.dumps(shipped_record, indent=2) + "\n"))
