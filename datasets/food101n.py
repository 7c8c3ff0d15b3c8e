"""Food-101N (Lee et al., CleanNet, CVPR 2018): about 310k web images of the 101 Food-101 classes,
labelled by their search query (about 20% wrong), as the original release lays it out::

    <root>/food-101n/images/<class>/<key>.jpg           # the release's Food-101N_release/, renamed
    <root>/food-101n/meta/classes.txt                   # a header line, then one class per line
    <root>/food-101n/meta/imagelist.tsv                 # a header line, then <class>/<key> per image
    <root>/food-101n/meta/verified_{train,val}.tsv      # a header, then <class>/<key> TAB 0|1

Training draws the few-shot set from the noisy images, K per class by their given (folder) label,
and keeps the noise they carry: no synthetic noise is added (DATASET.NOISE.RATE > 0 is an error
unless DATASET.FOOD101N.SYNTHETIC_NOISE True). The verification labels (1: the label is right,
0: wrong) report the realised noise rate of the drawn set in ``noise_record`` (``noise.json``), and
JoAPR's and NLPrompt's partition precision / recall are scored on the verified items (``verification_of``).

The test set is Food-101's (DATASET.FOOD101N.FOOD101_DIR, default ``<root>/food-101``), by
DATASET.FOOD101N.TEST_PROTOCOL: ``food101`` is the official ``meta/test.txt`` (25,250 images, as
JoAPR), ``coop`` the test part of CoOp's ``split_zhou_Food101.json`` (30,300 images, as NLPrompt).
There is no val split of its own: val is the test list (as ImageNet's), so the few-shot cache
(``food-101n/split_fewshot/``) holds train only and serves both protocols.
"""
import os
import os.path as osp
from collections import Counter

from yacs.config import CfgNode as CN

from ptnl.compat import DATASET_REGISTRY
from ptnl.config import register_config_keys
from ptnl.data.base import DatasetError, PTNLDatasetBase
from ptnl.data.splits import read_split_file
from ptnl.errors import ConfigError
from ptnl.noise.types import NoiseError

# DATASET.FOOD101N.TEST_PROTOCOL -> (what it is, who used it)
TEST_PROTOCOLS = {
    "food101": "Food-101's official meta/test.txt (JoAPR)",
    "coop": "the test part of CoOp's split_zhou_Food101.json (NLPrompt)",
}
CLASSES_HEADER = "class_name"  # the first line of the release's meta/classes.txt
VERIFIED_FILES = ("verified_train.tsv", "verified_val.tsv")


@register_config_keys
def _food101n_keys(cfg):
    if "FOOD101N" in cfg.DATASET:
        return
    cfg.DATASET.FOOD101N = CN()
    cfg.DATASET.FOOD101N.TEST_PROTOCOL = "food101"  # food101 (official test list, JoAPR) | coop (CoOp's split, NLPrompt)
    cfg.DATASET.FOOD101N.FOOD101_DIR = ""  # the Food-101 folder the test set comes from; "": <DATASET.ROOT>/food-101
    cfg.DATASET.FOOD101N.SYNTHETIC_NOISE = False  # allow DATASET.NOISE on top of Food-101N's real noise


@DATASET_REGISTRY.register()
class Food101N(PTNLDatasetBase):
    """Food-101N's noisy images for training, Food-101's test set by DATASET.FOOD101N.TEST_PROTOCOL."""

    dataset_dir = "food-101n"
    VERIFIED_LABELS = True  # meta/verified_*.tsv: sample selection is scored on these (verification_of)
    image_dir = "images"
    split_file = ""  # none: the release's lists are read every time
    fewshot_val = False  # val is the test list

    def __init__(self, cfg):
        opts = cfg.DATASET.FOOD101N
        if opts.TEST_PROTOCOL not in TEST_PROTOCOLS:
            raise ConfigError("DATASET.FOOD101N.TEST_PROTOCOL must be one of: {}; got {!r}".format(
                "; ".join("{} ({})".format(k, v) for k, v in TEST_PROTOCOLS.items()), opts.TEST_PROTOCOL))
        noise = cfg.DATASET.NOISE
        if (noise.RATE > 0 or noise.MODE == "release") and not opts.SYNTHETIC_NOISE:
            raise NoiseError(
                "Food-101N carries real label noise; DATASET.NOISE.RATE {} (MODE {}) would add synthetic noise on "
                "top. Use DATASET.NOISE.RATE 0 (and not MODE release), or set DATASET.FOOD101N.SYNTHETIC_NOISE "
                "True to add it on purpose.".format(noise.RATE, noise.MODE))
        root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
        self.test_protocol = opts.TEST_PROTOCOL
        self.food101_dir = (osp.abspath(osp.expanduser(opts.FOOD101_DIR)) if opts.FOOD101_DIR
                            else osp.join(root, "food-101"))
        super().__init__(cfg)
        # the pool is read unchecked (310k files); what is trained on must exist
        self.make_items([(d.impath, d.label, d.classname) for d in self.train_x], self.imagelist_source)
        stats = self.verified_stats(self.train_x)
        if self.noise_record is None:
            self.noise_record = self.real_noise_record(cfg, stats)
        else:  # synthetic noise on top, asked for: its record, plus what the release says of the images
            stats.pop("labels")
            self.noise_record["real_noise"] = stats

    def expected_contents(self):
        return ('the Food-101N release ("Food-101N_release/" renamed "food-101n/"): "images/<class>/<key>.jpg", '
                '"meta/classes.txt" (header line first), "meta/imagelist.tsv", "meta/verified_train.tsv" and '
                '"meta/verified_val.tsv"; the test set comes from Food-101 in "{}" '
                "(DATASET.FOOD101N.FOOD101_DIR)".format(self.food101_dir))

    # ------------------------------------------------------------------ the release's files
    def build_splits(self):
        meta = osp.join(self.dataset_dir, "meta")
        self.classnames_n = self.read_classes(osp.join(meta, "classes.txt"))
        cname2lab = {c: i for i, c in enumerate(self.classnames_n)}
        train = self.read_pool(meta, cname2lab)
        self.verification = self.read_verified(meta)
        test = self.read_test(cname2lab)
        return train, test, test

    def read_classes(self, path):
        """meta/classes.txt: the header line ``class_name``, then the classes (label = line order)."""
        lines = self.read_lines(path)
        if not lines or lines[0] != CLASSES_HEADER:
            raise DatasetError('"{}" should start with the release\'s header line "{}", then one class per line; '
                               "its first line is {!r}".format(path, CLASSES_HEADER, lines[0] if lines else ""))
        if len(lines) < 2:
            raise DatasetError('"{}" lists no class after its header'.format(path))
        return lines[1:]

    def read_pool(self, meta, cname2lab):
        """Every image, in meta/imagelist.tsv order (header dropped), else the class folders walked
        in classes.txt order with sorted files. Not checked on disk here (see ``__init__``)."""
        path = osp.join(meta, "imagelist.tsv")
        if osp.isfile(path):
            self.imagelist_source = path
            rels = self.read_lines(path)
            if rels and rels[0].partition("/")[0] not in cname2lab:
                rels = rels[1:]  # the header "class_name/key"
        else:
            self.imagelist_source = self.image_dir
            if not osp.isdir(self.image_dir):
                raise DatasetError('image folder "{}" not found (nor "{}")'.format(self.image_dir, path))
            rels = []
            for cname in cname2lab:
                cdir = osp.join(self.image_dir, cname)
                if osp.isdir(cdir):
                    rels += ["{}/{}".format(cname, f[:-4]) for f in sorted(os.listdir(cdir)) if f.endswith(".jpg")]
        items = []
        for rel in rels:
            cname = rel.partition("/")[0]
            if cname not in cname2lab:
                raise DatasetError('"{}" lists "{}", whose class is not in "{}"'.format(
                    self.imagelist_source, rel, osp.join(meta, "classes.txt")))
            items.append(self.datum(osp.join(self.image_dir, rel + ".jpg"), cname2lab[cname], cname))
        if not items:
            raise DatasetError('no image found in "{}"'.format(self.imagelist_source))
        return items

    def read_verified(self, meta):
        """{"<class>/<key>": (0 or 1, file name)} from meta/verified_{train,val}.tsv (1: the label is right)."""
        out = {}
        for name in VERIFIED_FILES:
            path = osp.join(meta, name)
            lines = self.read_lines(path)
            for n, line in enumerate(lines):
                parts = line.split("\t")
                if len(parts) != 2 or parts[1].strip() not in ("0", "1"):
                    if n == 0:
                        continue  # the header "class_name/key<TAB>verification_label"
                    raise DatasetError('"{}" line {}: expected "<class>/<key><TAB>0|1", got {!r}'.format(
                        path, n + 1, line))
                out[parts[0].strip()] = (int(parts[1]), name)
        return out

    def read_test(self, cname2lab):
        """The test set by protocol, labelled by Food-101N's classes (matched by name)."""
        image_dir = osp.join(self.food101_dir, "images")
        if not osp.isdir(self.food101_dir):
            raise DatasetError('Food-101 folder "{}" not found; Food-101N is tested on Food-101 ({}). Point '
                               "DATASET.FOOD101N.FOOD101_DIR at it (default: <DATASET.ROOT>/food-101)".format(
                                   self.food101_dir, TEST_PROTOCOLS[self.test_protocol]))
        if self.test_protocol == "food101":
            source = osp.join(self.food101_dir, "meta", "test.txt")
            rels = [line + ".jpg" for line in self.read_lines(source)]
        else:
            source = osp.join(self.food101_dir, "split_zhou_Food101.json")
            if not osp.isfile(source):
                raise DatasetError('CoOp\'s split file "{}" not found (TEST_PROTOCOL coop); download it from '
                                        "CoOp's DATASETS.md".format(source))
            rels = [rel for rel, _, _ in read_split_file(source)["test"]]
        records = []
        for rel in rels:
            cname = rel.replace("\\", "/").partition("/")[0]
            if cname not in cname2lab:
                raise DatasetError('"{}" lists "{}", whose class is not a Food-101N class (meta/classes.txt)'.format(
                    source, rel))
            records.append((osp.join(image_dir, rel), cname2lab[cname], cname))
        return self.make_items(records, source)

    # ------------------------------------------------------------------ the realised noise
    def _verified_entry(self, impath):
        rel = osp.relpath(impath, self.image_dir).replace(os.sep, "/")
        return self.verification.get(rel[:-4] if rel.endswith(".jpg") else rel)

    def verification_of(self, impath):
        """The release's verification label of an image's own (folder) label: 1 right, 0 wrong,
        None when the image was not verified. The sample-selection trainers score their partition on
        the verified items through it (``ptnl.trainers.selection.base.known_noise``)."""
        found = self._verified_entry(impath)
        return None if found is None else found[0]

    def verified_stats(self, items):
        """What meta/verified_*.tsv says of ``items``' images (each image's folder label); ``labels``
        holds each item's verification label (None: not verified)."""
        entries = [self._verified_entry(d.impath) for d in items]
        labels = [None if e is None else e[0] for e in entries]
        sources = Counter(e[1] for e in entries if e is not None)
        verified = sum(v is not None for v in labels)
        wrong = sum(v == 0 for v in labels)
        per_class = {}
        for d, v in zip(items, labels):
            entry = per_class.setdefault(str(d.label), {"shots": 0, "verified": 0, "wrong": 0})
            entry["shots"] += 1
            entry["verified"] += int(v is not None)
            entry["wrong"] += int(v == 0)
        return {
            "num_samples": len(items), "num_verified": verified, "num_verified_wrong": wrong,
            "num_verified_right": verified - wrong,
            "realised_rate": wrong / verified if verified else None,
            "verified_from": {name: sources.get(name, 0) for name in VERIFIED_FILES},
            "rule": "realised_rate = verified wrong / verified, over the images of the training set that "
                    "meta/verified_train.tsv or verified_val.tsv verify (0: the image's folder label is wrong)",
            "per_class": dict(sorted(per_class.items(), key=lambda kv: int(kv[0]))),
            "labels": labels,
        }

    def real_noise_record(self, cfg, stats):
        """``noise.json`` for Food-101N's own noise: the verified estimate as ``realised_rate``."""
        labels = stats.pop("labels")
        shots = cfg.DATASET.NUM_SHOTS
        return {
            "type": "real", "mode": "food101n", "rate": 0.0, "seed": cfg.SEED,
            "realised_rate": stats["realised_rate"] if stats["realised_rate"] is not None else 0.0,
            "num_noisy": stats["num_verified_wrong"], "num_samples": len(labels),
            "num_shots": shots if shots > 0 else None,
            "generator": "Food-101N's own labels (no synthetic noise); realised_rate over the verified images",
            "verified": {k: v for k, v in stats.items() if k != "per_class"},
            "per_class": stats["per_class"],
            "true_labels": "unknown: the release says whether a label is right, not which class is; true labels "
                           "are the given labels, so per-epoch clean/noisy diagnostics count every item as clean; "
                           "a sample-selection method's partition precision / recall is scored on the verified "
                           "items (verification_label 0: noisy, 1: clean; n/a when none is verified)",
            "test_protocol": "{} ({})".format(self.test_protocol, TEST_PROTOCOLS[self.test_protocol]),
            "samples": [{"impath": d.impath, "label": int(d.label), "verification_label": v}
                        for d, v in zip(self.train_x, labels)],
        }
