"""The base of PTNL's dataset classes: CoOp's split files and few-shot caches, then label noise.

A subclass names its folder, image folder, split file and template, and says how to build the
split when the split file is absent. This base reads the split (or builds and saves it), draws
the few-shot set exactly as Dassl does, reuses CoOp's few-shot pickles, and applies
``ptnl.noise`` right after sampling, keeping every sample's true label.
"""
import json
import os
import os.path as osp
import pickle
import random
import re
import tempfile

from ptnl import compat
from ptnl.noise import apply_noise
from ptnl.templates import dataset_template


class DatasetError(FileNotFoundError):
    """A dataset folder, split file or image is missing or malformed."""


def user_cache_dir():
    """PTNL's own cache folder (feature caches, caches for read-only data folders)."""
    return os.environ.get("PTNL_CACHE_DIR") or osp.join(
        os.environ.get("XDG_CACHE_HOME") or osp.expanduser("~/.cache"), "ptnl")


def atomic_write(path, write_fn, mode="w"):
    """Write through a temporary file in the same folder and rename: readers never see a
    partial file."""
    os.makedirs(osp.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=osp.dirname(path) or ".", prefix=".tmp-")
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def add_label_noise(cfg, items, pool, lab2cname):
    """``ptnl.noise.apply_noise`` with the run's DATASET.NOISE settings, seed and CLIP (for
    confusion noise): the one call behind both doors, PTNL's datasets right after few-shot
    sampling and the trainer base for datasets that added no noise (``pool`` None there)."""
    from ptnl.zeroshot import ConfusionScorer
    noise = cfg.DATASET.NOISE
    classnames = [lab2cname[k] for k in sorted(lab2cname)]
    return apply_noise(items, pool, noise.RATE, noise.TYPE, noise.MODE, cfg.SEED,
                       num_classes=max(lab2cname) + 1, key=cfg.DATASET.NAME,
                       make_item=lambda p, y, c: compat.Datum(impath=p, label=y, classname=c),
                       classnames=lab2cname, score_fn=ConfusionScorer(cfg, classnames),
                       num_shots=cfg.DATASET.NUM_SHOTS if cfg.DATASET.NUM_SHOTS > 0 else None)


class _DatumUnpickler(pickle.Unpickler):
    """Loads CoOp's few-shot pickles (Dassl ``Datum`` objects) without Dassl installed."""

    def find_class(self, module, name):
        if name == "Datum" and module.startswith("dassl."):
            return compat.Datum
        return super().find_class(module, name)


class PTNLDatasetBase(compat.DatasetBase):
    dataset_dir = ""  # folder under DATASET.ROOT
    image_dir = "images"  # split paths are relative to <dataset_dir>/<image_dir>
    split_file = ""  # CoOp's split_zhou_<Name>.json, in the dataset folder
    fewshot_val = True  # False: no few-shot val (ImageNet: val is the test list, cache holds train only)

    def __init__(self, cfg):
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.dataset_dir = osp.join(root, type(self).dataset_dir)
        self.image_dir = osp.join(self.dataset_dir, type(self).image_dir)
        self.split_path = osp.join(self.dataset_dir, self.split_file)
        if not osp.isdir(self.dataset_dir):
            raise DatasetError(
                'Dataset folder "{}" not found (DATASET.ROOT={!r} + "{}"); it should hold {}. Point '
                '--root / DATA at the folder that contains "{}/".'.format(
                    self.dataset_dir, cfg.DATASET.ROOT, type(self).dataset_dir, self.expected_contents(),
                    type(self).dataset_dir))
        train, val, test = self.read_splits()
        self.full_train = train
        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots >= 1:
            train, val = self.load_or_sample_fewshot(train, val, num_shots, cfg.SEED)
        classes = sorted({(d.label, d.classname) for d in self.full_train})
        lab2cname = dict(classes)
        self.noise_record = None
        self.true_labels = [d.label for d in train]
        noise = getattr(cfg.DATASET, "NOISE", None)
        if noise is not None and noise.RATE > 0:
            train, self.true_labels, self.noise_record = add_label_noise(cfg, train, self.full_train, lab2cname)
        super().__init__(train_x=train, val=val, test=test)
        # classes come from the whole training split, so noise or few-shot gaps cannot drop one
        self._num_classes = max(lab2cname) + 1
        self._lab2cname = lab2cname
        self._classnames = [lab2cname[k] for k in sorted(lab2cname)]

    @property
    def template(self):
        """The zero-shot template of this dataset (CoOp's, by registered name)."""
        return dataset_template(type(self).__name__)

    # ------------------------------------------------------------------ splits
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
        raise FileNotFoundError("no split generator for {}".format(type(self).__name__))

    def expected_contents(self):
        """What the dataset folder should hold, for error messages."""
        return 'the split file "{}" and the images'.format(self.split_file)

    def read_split(self, filepath, path_prefix):
        """CoOp's split JSON -> lists of Datum; every listed image must exist."""
        try:
            with open(filepath) as f:
                split = json.load(f)
            parts = [split[k] for k in ("train", "val", "test")]
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError('Split file "{}" is not a CoOp split (a JSON object with train, val and '
                               "test lists of [path, label, classname]): {}".format(filepath, e)) from e
        print(f"Reading split from {filepath}")
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
        split = {"train": rel(train), "val": rel(val), "test": rel(test)}
        atomic_write(filepath, lambda f: json.dump(split, f, indent=4, separators=(",", ": ")))
        print(f"Saved split to {filepath}")

    def read_and_split_data(self, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None):
        """CoOp's folder generator: sorted class folders, each shuffled with Python's ``random``
        and cut 50/20/30 by ``round``."""
        if not osp.isdir(self.image_dir):
            raise FileNotFoundError('image folder "{}" not found'.format(self.image_dir))
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
        n_total = len(items)
        n_train = round(n_total * p_trn)
        n_val = round(n_total * p_val)
        n_test = n_total - n_train - n_val
        if not (n_train > 0 and n_val > 0 and n_test > 0):
            raise DatasetError("{} has {} images: too few to split into train, val and test".format(
                where, n_total))
        return items[:n_train], items[n_train:n_train + n_val], items[n_train + n_val:]

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
            raise FileNotFoundError('official list file "{}" not found'.format(path))
        with open(path) as f:
            return [line.strip() for line in f if line.strip()]

    @staticmethod
    def read_mat(path, key):
        """Array ``key`` of a MATLAB file (scipy.io.loadmat's default layout)."""
        if not osp.isfile(path):
            raise FileNotFoundError('MATLAB file "{}" not found'.format(path))
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

    # ------------------------------------------------------------------ few-shot
    def load_or_sample_fewshot(self, train, val, num_shots, seed):
        """CoOp's few-shot picks: K per class from train, min(K, 4) from val, reusing CoOp's
        ``split_fewshot/shot_K-seed_S.pkl`` when present. Real Dassl writes that pickle; the
        built-in engine writes ``shot_K-seed_S.ptnl.json`` (paths relative to the image folder)
        so that it never leaves a file Dassl cannot read. With ``fewshot_val = False`` (ImageNet)
        only train is sampled and cached, and ``val`` comes back unchanged."""
        stem = f"shot_{num_shots}-seed_{seed}"
        pkl = osp.join(self.dataset_dir, "split_fewshot", stem + ".pkl")
        own = osp.join(self.dataset_dir, "split_fewshot", stem + ".ptnl.json")
        for path in (pkl, self._cache_path("split_fewshot", stem + ".pkl")):
            if osp.isfile(path):
                print(f"Loading preprocessed few-shot data from {path}")
                data = self.load_pickle(path)
                return data["train"], (data["val"] if self.fewshot_val else val)
        for path in (own, self._cache_path("split_fewshot", stem + ".ptnl.json")):
            if osp.isfile(path):
                print(f"Loading preprocessed few-shot data from {path}")
                return self._read_fewshot_json(path, train, val)
        train = self.generate_fewshot_dataset(train, num_shots=num_shots)
        parts = [("train", train)]
        if self.fewshot_val:
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
            parts.append(("val", val))
        if compat.ENGINE == "dassl":
            target = self._writable(pkl, "split_fewshot", stem + ".pkl")
            print(f"Saving preprocessed few-shot data to {target}")
            self.dump_pickle(target, dict(parts))
        else:
            target = self._writable(own, "split_fewshot", stem + ".ptnl.json")
            print(f"Saving preprocessed few-shot data to {target}")
            data = {k: [osp.relpath(d.impath, self.image_dir) for d in v] for k, v in parts}
            atomic_write(target, lambda f: json.dump(data, f))
        return train, val

    def _read_fewshot_json(self, path, train, val):
        by_path = {d.impath: d for d in list(train) + (list(val) if self.fewshot_val else [])}
        with open(path) as f:
            data = json.load(f)
        if not self.fewshot_val:
            data = {"train": data["train"], "val": []}
        out = []
        for key in ("train", "val"):
            items = []
            for rel in data[key]:
                full = osp.join(self.image_dir, rel)
                if full not in by_path:
                    raise DatasetError('Few-shot cache "{}" names "{}", which is not in the split; delete '
                                       "the cache to resample.".format(path, full))
                items.append(by_path[full])
            out.append(items)
        return out[0], (out[1] if self.fewshot_val else val)

    # ------------------------------------------------------------------ pickles and list caches
    @staticmethod
    def load_pickle(path):
        """A CoOp pickle (Dassl ``Datum`` objects) under either engine."""
        with open(path, "rb") as f:
            return _DatumUnpickler(f).load()

    @staticmethod
    def dump_pickle(path, data):
        """Pickle as CoOp does (highest protocol), but atomically."""
        atomic_write(path, lambda f: pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL), mode="wb")

    def load_datum_cache(self, stem):
        """A dict of Datum lists cached as ``<stem>.pkl`` (CoOp's, e.g. ImageNet's
        ``preprocessed.pkl``) or ``<stem>.ptnl.json`` (the built-in engine's), in the dataset folder
        or the user cache folder; None when there is none. The images are not checked."""
        for path in (osp.join(self.dataset_dir, stem + ".pkl"), self._cache_path(stem + ".pkl")):
            if osp.isfile(path):
                print(f"Loading preprocessed data from {path}")
                return self.load_pickle(path)
        for path in (osp.join(self.dataset_dir, stem + ".ptnl.json"), self._cache_path(stem + ".ptnl.json")):
            if osp.isfile(path):
                print(f"Loading preprocessed data from {path}")
                with open(path) as f:
                    data = json.load(f)
                return {k: [self.datum(osp.join(self.image_dir, rel), y, c) for rel, y, c in v]
                        for k, v in data.items()}
        return None

    def save_datum_cache(self, stem, data):
        """Write a dict of Datum lists atomically: CoOp's pickle ``<stem>.pkl`` under real Dassl,
        ``<stem>.ptnl.json`` (paths relative to the image folder) under the built-in engine, so
        that it never leaves a pickle Dassl cannot read."""
        if compat.ENGINE == "dassl":
            target = self._writable(osp.join(self.dataset_dir, stem + ".pkl"), stem + ".pkl")
            print(f"Saving preprocessed data to {target}")
            self.dump_pickle(target, data)
        else:
            target = self._writable(osp.join(self.dataset_dir, stem + ".ptnl.json"), stem + ".ptnl.json")
            print(f"Saving preprocessed data to {target}")
            out = {k: [[osp.relpath(d.impath, self.image_dir).replace(os.sep, "/"), d.label, d.classname]
                        for d in v] for k, v in data.items()}
            atomic_write(target, lambda f: json.dump(out, f))
        return target

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
