"""CoOp's split files (``split_zhou_<Name>.json``: train, val and test lists of [relative path,
label, class name]), the split generators of CoOp's datasets, and where caches go when a dataset
folder is read-only. ``read_split_file`` / ``write_split_file`` / ``write_dtd_layout`` serve any
code that reads or writes a split (generated datasets, the pocket world)."""
import json
import os
import os.path as osp
import random
import re
from typing import Callable, Dict, Sequence, Tuple

from ptnl import compat
from ptnl.errors import PTNLError
from ptnl.io import atomic_write, get_logger, user_cache_dir

log = get_logger(__name__)

SPLITS = ("train", "val", "test")
DTD_SPLIT_FILE = "split_zhou_DescribableTextures.json"


class DatasetError(PTNLError, FileNotFoundError):
    """A dataset folder, split file or image is missing or malformed."""


def read_split_file(filepath: str) -> Dict[str, list]:
    """A CoOp split file as {"train": [[rel path, label, class name], ...], "val": ..., "test": ...};
    ``DatasetError`` when it is not one."""
    try:
        with open(filepath) as f:
            split = json.load(f)
        [split[k] for k in SPLITS]
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetError('Split file "{}" is not a CoOp split (a JSON object with train, val and '
                           "test lists of [path, label, classname]): {}".format(filepath, e)) from e
    return split


def write_split_file(filepath: str, split: Dict[str, list]) -> None:
    """Write a CoOp split file atomically, formatted as CoOp's (indent 4).

    Args:
        filepath: the split file.
        split: {"train": [[rel path, label, class name], ...], "val": ..., "test": ...}.

    The file gets the permissions ``open()`` would give it (the umask's), as every atomic write.
    """
    atomic_write(filepath, lambda f: json.dump(split, f, indent=4, separators=(",", ": ")))


def cut_class(items: Sequence, p_trn: float = 0.5, p_val: float = 0.2) -> Tuple[list, list, list]:
    """CoOp's 50/20/30 cut of one class's items in their order: train, val, test by ``round``."""
    n_train, n_val = round(len(items) * p_trn), round(len(items) * p_val)
    return list(items[:n_train]), list(items[n_train:n_train + n_val]), list(items[n_train + n_val:])


def write_dtd_layout(root: str, classnames: Sequence[str], per_class: int, image_fn: Callable, *,
                     write_split: bool = True) -> str:
    """Write a generated dataset in CoOp's DTD layout: ``<root>/dtd/images/<class>/<class>_NNNN.jpg``
    and (optionally) ``split_zhou_DescribableTextures.json`` with CoOp's 50/20/30 cut per class.

    Args:
        root: the dataset root (``--root``).
        classnames: the classes, label k = ``classnames[k]``.
        per_class: images per class.
        image_fn: ``image_fn(label, name, index) -> (PIL image, save options)``, e.g.
            ``(img, {"quality": 90})``.
        write_split: also write the split file.

    Returns the dataset folder ``<root>/dtd``.
    """
    ddir = osp.join(root, "dtd")
    split = {k: [] for k in SPLITS}
    for label, name in enumerate(classnames):
        cdir = osp.join(ddir, "images", name)
        os.makedirs(cdir, exist_ok=True)
        rels = []
        for i in range(per_class):
            fname = "{}_{:04d}.jpg".format(name, i + 1)
            img, options = image_fn(label, name, i)
            img.save(osp.join(cdir, fname), **options)
            rels.append("{}/{}".format(name, fname))
        for key, part in zip(SPLITS, cut_class(rels)):
            split[key] += [[r, label, name] for r in part]
    if write_split:
        write_split_file(osp.join(ddir, DTD_SPLIT_FILE), split)
    return ddir


class SplitFiles:
    """The split-file half of PTNL's dataset base (``ptnl.data.base.PTNLDatasetBase``)."""

    def read_splits(self):
        """(train, val, test) lists of Datum: from the split file, else built and saved. A class
        without a split file (``split_file = ""``: FGVCAircraft, ImageNet) builds them every time."""
        if not self.split_file:
            try:
                return tuple(self.build_splits())
            except FileNotFoundError as e:
                raise DatasetError('Cannot read {} from "{}": {}. The folder should hold {}.'.format(
                    type(self).__name__, self.dataset_dir, e, self.expected_contents())) from e
        for path in (self.split_path, self._cache_path(self.split_file)):
            if osp.isfile(path):
                return self.read_split(path, self.image_dir)
        try:
            splits = self.build_splits()
        except FileNotFoundError as e:
            raise DatasetError(
                'Split file "{}" not found, and the split cannot be rebuilt from the raw data in '
                '"{}" ({}). Download the split file from CoOp\'s DATASETS.md into "{}".'.format(
                    self.split_path, self.dataset_dir, e, self.dataset_dir)) from e
        self.save_split(*splits, self._writable(self.split_path, self.split_file), self.image_dir)
        return splits

    def build_splits(self):
        """Build (train, val, test) from the raw dataset when the split file is absent."""
        raise DatasetError("no split generator for {}".format(type(self).__name__))

    def expected_contents(self):
        """What the dataset folder should hold, for error messages."""
        return 'the split file "{}" and the images'.format(self.split_file)

    def read_split(self, filepath, path_prefix):
        """CoOp's split JSON -> lists of Datum; every listed image must exist."""
        split = read_split_file(filepath)
        parts = [split[k] for k in SPLITS]
        log.info(f"Reading split from {filepath}")
        out, missing = [], []
        for part in parts:
            items = []
            for impath, label, classname in part:
                full = osp.join(path_prefix, impath)
                if not osp.isfile(full):
                    missing.append(full)
                    continue
                items.append(compat.Datum(impath=full, label=int(label), classname=classname))
            out.append(items)
        if missing:
            raise DatasetError('{} images listed in "{}" are missing under "{}", e.g. "{}".'.format(
                len(missing), filepath, path_prefix, missing[0]))
        return tuple(out)

    @staticmethod
    def save_split(train, val, test, filepath, path_prefix):
        def rel(items):
            return [[osp.relpath(d.impath, path_prefix).replace(os.sep, "/"), d.label, d.classname]
                    for d in items]
        write_split_file(filepath, {"train": rel(train), "val": rel(val), "test": rel(test)})
        log.info(f"Saved split to {filepath}")

    def read_and_split_data(self, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None):
        """CoOp's folder generator: sorted class folders, each shuffled with Python's ``random``
        and cut 50/20/30 by ``round``."""
        if not osp.isdir(self.image_dir):
            raise DatasetError('image folder "{}" not found'.format(self.image_dir))
        categories = [c for c in compat.listdir_nohidden(self.image_dir) if c not in ignored]
        categories.sort()
        train, val, test = [], [], []
        for label, category in enumerate(categories):
            category_dir = osp.join(self.image_dir, category)
            images = [osp.join(category_dir, im) for im in compat.listdir_nohidden(category_dir)]
            parts = self.shuffle_and_cut(images, p_trn, p_val, 'Class folder "{}"'.format(category_dir))
            name = new_cnames.get(category, category) if new_cnames else category
            for out, part in zip((train, val, test), parts):
                out += [compat.Datum(impath=p, label=label, classname=name) for p in part]
        return train, val, test

    @staticmethod
    def shuffle_and_cut(items, p_trn=0.5, p_val=0.2, where="A class"):
        """Shuffle ``items`` in place with Python's ``random`` and cut it into train / val / rest
        by ``round`` (CoOp's 50/20/30 rule); every part must be non-empty."""
        random.shuffle(items)
        parts = cut_class(items, p_trn, p_val)
        if not all(parts):
            raise DatasetError("{} has {} images: too few to split into train, val and test".format(
                where, len(items)))
        return parts

    @staticmethod
    def split_trainval(trainval, p_val=0.2):
        """CoOp's Pets-style carve-out: group ``trainval`` by label in order of first appearance,
        shuffle each group's indices with Python's ``random`` and move the first
        ``round(p_val * n)`` (must be > 0) to val. Returns (train, val)."""
        groups = {}
        for idx, item in enumerate(trainval):
            groups.setdefault(item.label, []).append(idx)
        train, val = [], []
        for label, idxs in groups.items():
            n_val = round(len(idxs) * p_val)
            if n_val <= 0:
                raise DatasetError("Class {} ({!r}) has {} train+val images: too few to carve out a val "
                                   "part".format(label, trainval[idxs[0]].classname, len(idxs)))
            random.shuffle(idxs)
            for n, idx in enumerate(idxs):
                (val if n < n_val else train).append(trainval[idx])
        return train, val

    # ------------------------------------------------------------------ raw-file helpers
    @staticmethod
    def read_lines(path):
        """The stripped, non-empty lines of an official list file (any line ending)."""
        if not osp.isfile(path):
            raise DatasetError('official list file "{}" not found'.format(path))
        with open(path) as f:
            return [line.strip() for line in f if line.strip()]

    @staticmethod
    def read_mat(path, key):
        """Array ``key`` of a MATLAB file (scipy.io.loadmat's default layout)."""
        if not osp.isfile(path):
            raise DatasetError('MATLAB file "{}" not found'.format(path))
        from scipy.io import loadmat
        data = loadmat(path)
        if key not in data:
            raise DatasetError('MATLAB file "{}" has no "{}" array'.format(path, key))
        return data[key]

    @staticmethod
    def datum(impath, label, classname):
        """A Datum built without the existence check (as unpickling builds it); for paths just
        checked or read from one of our caches."""
        d = compat.Datum.__new__(compat.Datum)
        d.__dict__.update(_impath=impath, _label=int(label), _domain=0, _classname=classname)
        return d

    def make_items(self, records, source):
        """(absolute image path, label, class name) records -> Datum list. Every image must exist;
        ``source`` (the list or folder they came from) is named when some do not."""
        missing = [r[0] for r in records if not osp.isfile(r[0])]
        if missing:
            raise DatasetError('{} images listed in "{}" are missing, e.g. "{}".'.format(
                len(missing), source, missing[0]))
        return [self.datum(p, y, c) for p, y, c in records]

    # ------------------------------------------------------------------ cache locations
    def _cache_path(self, *parts):
        """Where a cache goes when the dataset folder is read-only."""
        tag = re.sub(r"[^A-Za-z0-9._-]+", "_", self.dataset_dir.strip(os.sep))
        return osp.join(user_cache_dir(), "datasets", tag, *parts)

    def _writable(self, preferred, *cache_parts):
        folder = osp.dirname(preferred)
        try:
            os.makedirs(folder, exist_ok=True)
            if os.access(folder, os.W_OK):
                return preferred
        except OSError:
            pass
        return self._cache_path(*cache_parts)
