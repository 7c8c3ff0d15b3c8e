"""The one door of label noise into a training set.

``label_training_set`` labels a run's training set with its DATASET.NOISE protocol (zero-shot
scores for confusion noise included). It is called with the same arguments from the two places a
training set is made: PTNL's dataset base right after few-shot sampling (with the full training
split as the swap pool), and the trainer base for a dataset that added no noise (a CoOp fork's,
no pool). It returns one ``TrainingSet``: the items trained on, their true labels and the noise
record; the trainer reads that object and nothing writes labels anywhere else. ``noisy_items`` is
its engine-free core over lists of Dassl ``Datum``. With DATASET.NOISE.FILE it trains on exactly the
set a noisy-set file lists (``ptnl.noise.files``).
"""
import os.path as osp
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ptnl.io import get_logger
from ptnl.io.cache import file_sha256
from ptnl.noise.files import check_header, describe_file, file_rows, match_rows, relative_impath
from ptnl.noise.protocols import (COUNT_RULE, RELEASE_RULES, check_protocol, flip_noise, release_noise, swap_noise,
                                  transition_matrix)
from ptnl.noise.types import NOISE_TYPES, NoiseError, noise_type as _noise_type

log = get_logger(__name__)

Result = Tuple[list, List[int], Optional[dict]]


class TrainingSet(NamedTuple):
    """A run's training set, as labelled once: ``items`` (Dassl ``Datum``; ``label`` is the given
    label, the one trained on), each item's ``true_labels`` (same order) and the noise ``record``
    (``noise.json``'s content; None without noise)."""

    items: list
    true_labels: List[int]
    record: Optional[dict]

    @property
    def given_labels(self) -> List[int]:
        return [d.label for d in self.items]

    def true_label_of(self) -> Dict[str, int]:
        """{image path: true label} (the diagnostics' lookup from a batch's ``impath``)."""
        return {d.impath: t for d, t in zip(self.items, self.true_labels)}


def label_training_set(cfg, items: Sequence, *, pool: Optional[Sequence], lab2cname: Dict[int, str],
                       split_file: Optional[str] = None) -> TrainingSet:
    """The training set of a run, labelled with its noise protocol, or read from DATASET.NOISE.FILE.

    Args:
        cfg: the run's config (DATASET.NOISE.*, DATASET.NAME, DATASET.ROOT, DATASET.NUM_SHOTS, SEED;
            for confusion noise also MODEL.BACKBONE.NAME and the loaders' settings).
        items: the few-shot set (Dassl ``Datum``).
        pool: the full training split swap draws replacements from; None when the dataset has
            none (then only ``flip`` works, and a FILE may name only images of ``items``).
        lab2cname: label -> class name, of every class.
        split_file: the split file the dataset read, if any; its sha256 goes into the record.

    Returns the ``TrainingSet`` (items to train on, their true labels, noise record or None):
    unchanged items and no record at rate 0 (or without DATASET.NOISE). Mode
    ``release`` draws its own few-shot set from ``pool`` (``items`` are not used), at rate 0 too.
    With DATASET.NOISE.FILE the file decides the items and their labels (``items`` are not used).
    """
    noise = getattr(cfg.DATASET, "NOISE", None)
    if noise is not None and getattr(noise, "FILE", ""):
        new_items, true, record = file_training_set(cfg, items, pool=pool, lab2cname=lab2cname)
        return TrainingSet(new_items, true, _with_dataset(record, cfg, lab2cname, split_file))
    if noise is None or (noise.RATE == 0 and noise.MODE != "release"):
        return TrainingSet(items, [d.label for d in items], None)
    if pool is None and noise.MODE in ("swap", "release"):
        raise NoiseError("DATASET.NOISE.MODE {} needs the full training split, which dataset {} does "
                         "not expose (a PTNL dataset class does). Use DATASET.NOISE.MODE flip.".format(
                             noise.MODE, cfg.DATASET.NAME))
    from ptnl import compat
    from ptnl.noise.confusion import ConfusionScorer
    classnames = [lab2cname[k] for k in sorted(lab2cname)]
    new_items, true, record = noisy_items(
        items, pool, rate=noise.RATE, noise_type=noise.TYPE, mode=noise.MODE, seed=cfg.SEED,
        num_classes=max(lab2cname) + 1, key=cfg.DATASET.NAME,
        make_item=lambda p, y, c: compat.Datum(impath=p, label=y, classname=c),
        classnames=lab2cname, score_fn=ConfusionScorer(cfg, classnames),
        num_shots=cfg.DATASET.NUM_SHOTS if cfg.DATASET.NUM_SHOTS > 0 else None,
        duplicates=bool(getattr(noise, "RELEASE_DUPLICATES", False)))
    return TrainingSet(new_items, true, _with_dataset(record, cfg, lab2cname, split_file))


def _with_dataset(record: dict, cfg, lab2cname: Dict[int, str], split_file: Optional[str]) -> dict:
    """The record with what a noisy-set file needs to name its images and classes elsewhere: the
    dataset, its root, the class list and the split file's sha256 (``python -m ptnl.noise export``)."""
    record.update({
        "dataset": cfg.DATASET.NAME, "root": osp.abspath(osp.expanduser(cfg.DATASET.ROOT)),
        "classnames": [lab2cname[k] for k in sorted(lab2cname)],
        "split_file": osp.basename(split_file) if split_file else None,
        "split_sha256": file_sha256(split_file) if split_file and osp.isfile(split_file) else None,
    })
    return record


def file_training_set(cfg, items: Sequence, *, pool: Optional[Sequence], lab2cname: Dict[int, str]) -> Result:
    """The training set DATASET.NOISE.FILE lists: its images (relative to DATASET.ROOT, looked up in
    ``pool``, else in ``items``), in its order, with the given labels of DATASET.NOISE.FILE_COLUMN.
    A file of another dataset or class list, or naming an image the dataset lacks (or with another
    true label), is refused naming the first mismatch. The seed still decides everything else."""
    from ptnl import compat
    noise = cfg.DATASET.NOISE
    path = osp.expanduser(noise.FILE)
    root = osp.abspath(osp.expanduser(cfg.DATASET.ROOT))
    classnames = [lab2cname.get(k, str(k)) for k in range(max(lab2cname) + 1)]
    header, rows, column = file_rows(path, getattr(noise, "FILE_COLUMN", ""))
    check_header(header, dataset=cfg.DATASET.NAME, classnames=classnames, path=noise.FILE)
    source = pool if pool is not None else items
    known = {relative_impath(d.impath, root): d for d in source}
    matched = match_rows(rows, column, known, classnames, path=noise.FILE, root=root)
    new_items = [d if g == d.label else compat.Datum(impath=d.impath, label=g, classname=classnames[g])
                 for d, _, g in matched]
    true = [t for _, t, _ in matched]
    if noise.RATE != 0:
        log.warning("DATASET.NOISE.FILE decides the training set: DATASET.NOISE.RATE {}, TYPE {}, MODE {} are not "
                    "used (the file's protocol: {} {} rate {})".format(noise.RATE, noise.TYPE, noise.MODE,
                                                                     header.get("type"), header.get("protocol"),
                                                                     header.get("rate")))
    info = describe_file(path, column, header)
    record = training_set_record(
        true, [d.label for d in new_items], [d.impath for d in new_items],
        noise_type=header.get("type") or "file", mode=header.get("protocol") or "file",
        rate=header.get("rate") if header.get("rate") is not None else sum(
            t != d.label for t, d in zip(true, new_items)) / max(len(true), 1),
        seed=header.get("seed"), num_classes=len(classnames), num_shots=header.get("shots"))
    record.update({
        "file": info,
        "generator": "ptnl.noise.files: {} (sha256 {}, column {})".format(
            osp.basename(path), info["sha256"], column),
        "rules": {"file": "the training set is the file's rows in its order: images by path relative to "
                          "DATASET.ROOT, given labels from column {}".format(column)},
        "label_rule": None,
    })
    log.info('Training set from DATASET.NOISE.FILE "{}" (column {}, sha256 {}): {} items, {} noisy'.format(
        noise.FILE, column, info["sha256"][:12], record["num_samples"], record["num_noisy"]))
    return new_items, true, record


def noisy_items(items: Sequence, pool: Optional[Sequence], *, rate: float, noise_type: str, mode: str, seed: int,
                num_classes: int, key: str, make_item: Callable, classnames: Optional[Dict[int, str]] = None,
                score_fn: Optional[Callable] = None, num_shots: Optional[int] = None,
                duplicates: bool = False) -> Tuple[list, List[int], dict]:
    """Apply a protocol to a few-shot list of Dassl ``Datum``.

    Args:
        items: the few-shot set S.
        pool: the images swap may draw from (the full training split; items of S are left out
            here), None when the dataset has none.
        rate, noise_type, mode, seed: the protocol (docs/noise.md).
        num_classes: C. key: the dataset's name (seeds the protocol's generator).
        make_item: ``make_item(impath, label, classname)`` builds a Datum.
        classnames: label -> class name, for relabelled items.
        score_fn: ``score_fn(impaths)`` returns zero-shot scores [len(impaths), C]; only types
            with ``needs_scores`` (confusion) call it (on S for flip, on the pool for swap).
        num_shots: K, for the record (default: the largest class); mode ``release`` draws K per
            class from ``pool`` (the full training split, in split order) and ignores ``items``.
        duplicates: mode ``release`` only: draw with replacement as the release does
            (DATASET.NOISE.RELEASE_DUPLICATES; see ``ptnl.noise.protocols.release_noise``).

    Returns ``(new_items, true_labels, record)`` where ``record`` is the ``noise.json`` content.
    """
    check_protocol(rate, noise_type, mode)
    needs_scores = _noise_type(noise_type).needs_scores
    labels = [it.label for it in items]
    names = dict(classnames or {})
    for it in items:
        names.setdefault(it.label, it.classname)

    def scores_of(paths):
        if score_fn is None:
            raise NoiseError("Confusion noise needs zero-shot CLIP scores, and no scorer was given")
        return np.asarray(score_fn(paths), dtype=np.float64)

    fallback = np.zeros(len(items), dtype=bool)
    release = None
    if mode == "release":
        if pool is None:
            raise NoiseError("Release noise draws the few-shot set from the full training split; this dataset "
                             "does not expose one. Use DATASET.NOISE.MODE flip.")
        if num_shots is None:
            raise NoiseError("DATASET.NOISE.MODE release draws K shots per class and needs DATASET.NUM_SHOTS >= 1")
        pool = list(pool)
        release = release_noise([p.label for p in pool], rate, num_shots, num_classes, seed, noise_type,
                                duplicates=duplicates)
        new_items = [pool[i] if pool[i].label == g else make_item(pool[i].impath, int(g), names.get(int(g), str(g)))
                     for i, g in zip(release["index"].tolist(), release["given"].tolist())]
        true = release["true"].tolist()
        fallback = np.zeros(len(new_items), dtype=bool)
    elif rate == 0:
        new_items, true = list(items), list(labels)
    elif mode == "flip":
        scores = scores_of([it.impath for it in items]) if needs_scores else None
        out = flip_noise(labels, rate, num_classes, seed, noise_type, key, scores=scores)
        true = list(labels)
        new_items = [it if not flip else make_item(it.impath, int(g), names.get(int(g), str(g)))
                     for it, g, flip in zip(items, out["given"], out["noisy"])]
    else:
        if pool is None:
            raise NoiseError("Swap noise needs the full training split to draw replacement images "
                             "from; this dataset does not expose one. Use DATASET.NOISE.MODE flip.")
        chosen = {it.impath for it in items}
        pool = [p for p in pool if p.impath not in chosen]
        scores = scores_of([p.impath for p in pool]) if needs_scores else None
        out = swap_noise(labels, [p.label for p in pool], rate, num_classes, seed, noise_type, key,
                         pool_scores=scores)
        true = out["true"].tolist()
        fallback = out["fallback"]
        new_items = [it if s < 0 else make_item(pool[s].impath, it.label, it.classname)
                     for it, s in zip(items, out["source"])]
    given = [it.label for it in new_items]
    record = training_set_record(true, given, [it.impath for it in new_items], noise_type=noise_type, mode=mode,
                                 rate=rate, seed=seed, num_classes=num_classes, num_shots=num_shots,
                                 fallbacks=int(fallback.sum()))
    if release is not None:
        record.update({
            "generator": "ptnl.noise.release_noise (release / {}): the released code's sampler; clean picks "
                         "numpy.random.default_rng({}).choice, wrong picks random.Random({}).{}".format(
                             noise_type, seed, seed, "choices (with replacement)" if duplicates else "sample"),
            "rules": dict(RELEASE_RULES),
            "release": {"num_fp": release["num_fp"], "duplicates": bool(duplicates),
                        "repeated_picks": int(release["repeats"])}})
        record["samples"] = record.pop("samples")  # samples stay the last key
    return new_items, [int(t) for t in true], record


def training_set_record(true: Sequence[int], given: Sequence[int], impaths: Sequence[str], *, noise_type: str,
                        mode: str, rate: float, seed, num_classes: int, num_shots: Optional[int],
                        fallbacks: int = 0) -> dict:
    """``noise.json``'s content for a labelled training set: the protocol, realised rate, per-class
    counts, the true -> given transition matrix and one sample record per item, in order."""
    n_noisy = sum(int(t != g) for t, g in zip(true, given))
    per_class = {}
    for t, g in zip(true, given):
        entry = per_class.setdefault(int(g), {"shots": 0, "noisy": 0})
        entry["shots"] += 1
        entry["noisy"] += int(t != g)
    shots = num_shots if num_shots is not None else max((v["shots"] for v in per_class.values()), default=0)
    return {
        "type": noise_type, "mode": mode, "rate": rate, "seed": seed,
        "realised_rate": n_noisy / max(len(given), 1),
        "num_noisy": n_noisy, "num_samples": len(given), "num_shots": shots,
        "rules": {
            "count": COUNT_RULE,
            "small_classes": "a class with fewer than K shots keeps all it has; swap replaces "
                             "floor(rate * n + 0.5) of its n",
            "pool": "swap draws from the training split outside the few-shot set, each image at most "
                    "once; too few images is an error naming the classes left short",
            "confusion_fallback": "swap/confusion: when no unused image has class c as its top wrong "
                                  "class, the unused other-class image scoring highest for c is taken",
        },
        "small_classes": {str(k): v["shots"] for k, v in sorted(per_class.items()) if v["shots"] < shots},
        "confusion_fallbacks": fallbacks,
        "generator": "ptnl.noise ({} / {})".format(mode, noise_type),
        "label_rule": (_noise_type(noise_type).label_rule("swap" if mode == "release" else mode)
                       if noise_type in NOISE_TYPES else None),
        "per_class": {str(k): v for k, v in sorted(per_class.items())},
        "transition": transition_matrix(true, given, num_classes),
        "samples": [{"impath": p, "true_label": int(t), "label": int(g)} for p, t, g in zip(impaths, true, given)],
    }
