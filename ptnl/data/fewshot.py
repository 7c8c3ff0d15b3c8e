"""Few-shot sets as CoOp draws and caches them (``split_fewshot/shot_K-seed_S.pkl``, and the
built-in engine's own ``.ptnl.json`` files), and CoOp's pickles of Dassl ``Datum`` lists, readable
without Dassl installed."""
import json
import os
import os.path as osp
import pickle

from ptnl import compat
from ptnl.data.splits import DatasetError
from ptnl.io import atomic_write, get_logger
from ptnl.io.cache import missing_files

log = get_logger(__name__)


class _DatumUnpickler(pickle.Unpickler):
    """Loads CoOp's few-shot pickles (Dassl ``Datum`` objects) without Dassl installed, and nothing
    else: any other global a pickle names (a function to call, another class) is refused, so a
    hostile file never runs code."""

    ALLOWED = {("copyreg", "_reconstructor"), ("builtins", "object"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if name == "Datum" and (module.startswith("dassl.") or module.startswith("ptnl.engine")):
            return compat.Datum
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError('it holds a pickled "{}.{}", which is not a Dassl Datum'.format(module, name))



class FewShotCache:
    """The few-shot and pickle half of PTNL's dataset base (``ptnl.data.base.PTNLDatasetBase``)."""

    def load_or_sample_fewshot(self, train, val, num_shots, seed):
        """CoOp's few-shot picks: K per class from train, min(K, 4) from val, reusing CoOp's
        ``split_fewshot/shot_K-seed_S.pkl`` when present. Real Dassl writes that pickle; the
        built-in engine writes ``shot_K-seed_S.ptnl.json`` (paths relative to the image folder)
        so that it never leaves a file Dassl cannot read. With ``fewshot_val = False`` (ImageNet)
        only train is sampled and cached, and ``val`` comes back unchanged. A cache that names an
        image no longer on disk (or, ours, outside the split) is an error that says to delete it."""
        stem = f"shot_{num_shots}-seed_{seed}"
        pkl = osp.join(self.dataset_dir, "split_fewshot", stem + ".pkl")
        own = osp.join(self.dataset_dir, "split_fewshot", stem + ".ptnl.json")
        for path in (pkl, self._cache_path("split_fewshot", stem + ".pkl")):
            if osp.isfile(path):
                log.info(f"Loading preprocessed few-shot data from {path}")
                data = self.load_pickle(path)
                self._check_named_files(path, list(data["train"]) + (list(data["val"]) if self.fewshot_val else []))
                return data["train"], (data["val"] if self.fewshot_val else val)
        for path in (own, self._cache_path("split_fewshot", stem + ".ptnl.json")):
            if osp.isfile(path):
                log.info(f"Loading preprocessed few-shot data from {path}")
                return self._read_fewshot_json(path, train, val)
        train = self.generate_fewshot_dataset(train, num_shots=num_shots)
        parts = [("train", train)]
        if self.fewshot_val:
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
            parts.append(("val", val))
        if compat.ENGINE == "dassl":
            target = self._writable(pkl, "split_fewshot", stem + ".pkl")
            log.info(f"Saving preprocessed few-shot data to {target}")
            self.dump_pickle(target, dict(parts))
        else:
            target = self._writable(own, "split_fewshot", stem + ".ptnl.json")
            log.info(f"Saving preprocessed few-shot data to {target}")
            data = {k: [osp.relpath(d.impath, self.image_dir) for d in v] for k, v in parts}
            atomic_write(target, lambda f: json.dump(data, f))
        return train, val

    @staticmethod
    def _check_named_files(path, items):
        """A DatasetError unless every image a few-shot cache names is on disk (CoOp's pickles hold
        absolute paths, which the split file's check does not cover: a moved or deleted image would
        otherwise fail mid-run). One ``stat`` per image; the picks themselves stay CoOp's."""
        gone = missing_files([d.impath for d in items])
        if gone:
            raise DatasetError('Few-shot cache "{}" names {} image(s) that are not on disk, e.g. "{}" (moved or '
                               "deleted since it was written); delete it to draw the few-shot set again.".format(
                                   path, len(gone), gone[0]))

    def _read_fewshot_json(self, path, train, val):
        by_path = {d.impath: d for d in list(train) + (list(val) if self.fewshot_val else [])}
        try:
            with open(path) as f:
                data = json.load(f)
            if not all(isinstance(data.get(k), list) for k in (("train", "val") if self.fewshot_val else ("train",))):
                raise ValueError("expected lists of image paths under train and val")
        except (ValueError, AttributeError) as e:
            raise DatasetError('Few-shot cache "{}" is damaged ({}); delete it to draw the few-shot set again.'.format(
                path, e)) from None
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
        try:
            with open(path, "rb") as f:
                data = _DatumUnpickler(f).load()
            if not isinstance(data, dict) or not all(
                    isinstance(v, list) and all(isinstance(d, compat.Datum) for d in v) for v in data.values()):
                raise ValueError("expected a dict of Datum lists")
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                ImportError, UnicodeDecodeError) as e:
            raise DatasetError('Cache "{}" is damaged or refused ({}); delete it and it is made again.'.format(
                path, e)) from None
        return data

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
                log.info(f"Loading preprocessed data from {path}")
                return self.load_pickle(path)
        for path in (osp.join(self.dataset_dir, stem + ".ptnl.json"), self._cache_path(stem + ".ptnl.json")):
            if osp.isfile(path):
                log.info(f"Loading preprocessed data from {path}")
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
            log.info(f"Saving preprocessed data to {target}")
            self.dump_pickle(target, data)
        else:
            target = self._writable(osp.join(self.dataset_dir, stem + ".ptnl.json"), stem + ".ptnl.json")
            log.info(f"Saving preprocessed data to {target}")
            out = {k: [[osp.relpath(d.impath, self.image_dir).replace(os.sep, "/"), d.label, d.classname]
                        for d in v] for k, v in data.items()}
            atomic_write(target, lambda f: json.dump(out, f))
        return target
