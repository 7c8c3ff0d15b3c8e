"""The sample-selection framework: a trainer base that partitions the noisy training set every
epoch and trains on index subsets of it (the methods: ``joapr``, ``nlprompt``; their algorithms are
the pure functions of ``ptnl.selection``; docs/methods.md).

The base gives a method: ``training_pass()``, one pass over the whole training set returning
per-item logits, probabilities, features and losses in item order (test transform by default, from
the cached image features, so the pass is a matrix product with the current text features);
``subset_loader(indices)``, a training loader over a subset (DATALOADER.RANDOMNESS kept), the full
loader coming back in ``after_epoch``; ``record_partition(noisy)``, precision and recall of the noisy
set against the true labels (for a dataset that verifies only some labels, Food-101N, against its
verification labels, over the verified items), in log.txt, TensorBoard, epochs.json and results.json
(``partition``).

A method's per-dataset presets (``configs/methods/<method>.yaml``) and the settings its RELEASE_BUGS
flag implies are applied to the config by ``apply_method_presets`` (train.py's config setup, which the
scripts and grid engines go through) for every key the user did not set; the run logs the values used
and where they came from in one line (``* JoAPR settings: ...``) and records them in results.json.
"""
import os.path as osp
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ptnl import compat
from ptnl.data.base import PTNLDatasetBase
from ptnl.data.decoded import wrapper_for
from ptnl.data.randomness import EpochSampler, PerSampleRandomness, build_train_loader, run_seed, set_loader_epoch, \
    stream_seed
from ptnl.errors import ConfigError
from ptnl.io import get_logger
from ptnl.selection import presets
from ptnl.selection.partition import partition_scores
from ptnl.trainers.prompt_tuning import PTNL

log = get_logger(__name__)

PASS_TRANSFORMS = ("test", "train")
PARTITION_SCALARS = ("precision", "recall", "num_noisy")


class SampleSelectionTrainer(PTNL):
    """CoOp's prompt learner trained on per-epoch partitions of the noisy training set. A method
    sets ``CFG_NODE`` (its keys under TRAINER.<CFG_NODE>, with PASS_TRANSFORM and RELEASE_BUGS),
    partitions in ``before_epoch`` and trains in ``run_epoch`` / ``compute_loss``."""

    CFG_NODE = ""
    GROUPABLE = False  # selects its own training subset each epoch
    RELEASE_PASS_TRANSFORM = None  # the release's PASS_TRANSFORM, implied by RELEASE_BUGS True unless set

    @classmethod
    def preset_of(cls, cfg) -> Tuple[Dict, str]:
        """({key under TRAINER.<CFG_NODE>: value}, where from) that this run's dataset, noise type and
        rate get from the method's preset table (``configs/methods/<method>.yaml``, when there is one),
        plus the release's pass transform when RELEASE_BUGS is on."""
        values, sources = {}, []
        path = presets.presets_file(cls.CFG_NODE)
        if cls.CFG_NODE and osp.isfile(path):
            table = presets.load_presets(path)
            if table["node"] != "TRAINER." + cls.CFG_NODE:
                raise ConfigError('Preset table "{}" is for {}, not TRAINER.{}'.format(path, table["node"],
                                                                                     cls.CFG_NODE))
            noise = cfg.DATASET.NOISE
            row, source = presets.lookup_preset(table, cfg.DATASET.NAME, noise.TYPE, noise.RATE)
            values.update(row)
            sources.append("{} from {}".format(", ".join(row), source))
        if cls.RELEASE_PASS_TRANSFORM and cfg.TRAINER[cls.CFG_NODE].RELEASE_BUGS:
            values["PASS_TRANSFORM"] = cls.RELEASE_PASS_TRANSFORM
            sources.append("PASS_TRANSFORM {} implied by RELEASE_BUGS True (the release's pass)".format(
                cls.RELEASE_PASS_TRANSFORM))
        return values, "; ".join(sources)

    def preset_record(self) -> Dict:
        """The preset of this run (``preset_of``), the values used, and the keys whose value differs
        (set by the user): results.json's ``method_preset``."""
        values, source = self.preset_of(self.cfg)
        used = {k: self.opts[k] for k in values}
        return {"source": source, "preset": values, "used": used,
                "overridden": sorted(k for k in values if used[k] != values[k])}

    def settings_line(self) -> str:
        """One log line: the method's settings and where the preset ones came from."""
        rec = self.preset_record()
        shown = ", ".join("{} {}".format(k, self.opts[k]) for k in self.opts)
        line = "* {} settings: {}".format(type(self).__name__, shown)
        if rec["source"]:
            line += " | preset: " + rec["source"]
        if rec["overridden"]:
            line += " | set by the user instead: " + ", ".join(
                "{} {} (preset {})".format(k, rec["used"][k], rec["preset"][k]) for k in rec["overridden"])
        return line

    @property
    def opts(self):
        return self.cfg.TRAINER[self.CFG_NODE]

    @property
    def release(self) -> bool:
        return bool(self.opts.RELEASE_BUGS)

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        mode = cfg.TRAINER[cls.CFG_NODE].PASS_TRANSFORM
        if mode not in PASS_TRANSFORMS:
            raise ConfigError("TRAINER.{}.PASS_TRANSFORM must be one of {}, got {!r}".format(
                cls.CFG_NODE, PASS_TRANSFORMS, mode))

    def build_data_loader(self):
        super().build_data_loader()
        self.given_labels = np.array([d.label for d in self.train_items])
        self.true_labels = np.array([self.true_label_of[d.impath] for d in self.train_items])
        # which items' noise is known: all, or (Food-101N) the items the release verified
        self.truly_noisy, self.noise_known, self.true_known = known_noise(
            self.dm.dataset, self.train_items, self.given_labels, self.true_labels)
        self.full_train_loader = self.train_loader_x
        self._seed = run_seed(self.cfg)
        self._pass_loader = None

    def stream(self, *keys: int) -> int:
        """A seed drawn from (run seed, keys): the method's own draws, independent of workers."""
        return stream_seed(self._seed, *keys)

    # ------------------------------------------------------------------ the pass over the training set
    def _loader_for_pass(self, transform):
        cfg = self.cfg
        base = wrapper_for(cfg.TRAINER.PTNL.DECODE_CACHE_MB) or compat.DatasetWrapper
        n = len(self.train_items)
        if cfg.DATALOADER.RANDOMNESS == "per_sample":  # each item's augmentation from (seed, epoch, index)
            wrapper = type(base.__name__, (PerSampleRandomness, base), {"seed": self.stream(1)})
            sampler = EpochSampler(n, wrapper.seed, shuffle=False)
        else:
            wrapper, sampler = base, torch.utils.data.SequentialSampler(range(n))
        return torch.utils.data.DataLoader(
            wrapper(cfg, self.train_items, transform=transform, is_train=False),
            batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, sampler=sampler, drop_last=False,
            num_workers=cfg.DATALOADER.NUM_WORKERS, pin_memory=torch.cuda.is_available() and cfg.USE_CUDA)

    @torch.no_grad()
    def training_pass(self, transform: Optional[str] = None) -> Dict:
        """Every training item once, in item order (``self.train_items``), in eval mode: ``logits``
        [N, C], ``probs``, ``features`` (L2-normalised), ``loss`` (CE on the given label), ``labels``
        (given) and ``true_labels``. ``transform``: ``test`` (default: TRAINER.<M>.PASS_TRANSFORM;
        with TRAINER.PTNL.CACHE_FEATURES the features are encoded once and each pass is a product
        with the current text features) or ``train`` (the training augmentation, drawn per item and
        epoch under per_sample randomness)."""
        transform = transform or self.opts.PASS_TRANSFORM
        self.set_model_mode("eval")
        encode = lambda x: self.model.image_encoder(x.type(self.model.dtype))  # noqa: E731
        if transform == "test" and self.cfg.TRAINER.PTNL.CACHE_FEATURES:
            feats = self.cached_features("train", self.train_items)
        else:
            tfm = (self.dm.test_loader.dataset.transform if transform == "test"
                   else self.full_train_loader.dataset.transform)
            if self._pass_loader is None or self._pass_loader.dataset.transform is not tfm:
                self._pass_loader = self._loader_for_pass(tfm)
            set_loader_epoch(self._pass_loader, self.epoch)
            chunks, order = [], []
            with self.autocast():
                for batch in self._pass_loader:
                    chunks.append(F.normalize(encode(batch["img"].to(self.device)).float(), dim=-1).cpu())
                    order.append(torch.as_tensor(batch["index"]))
            feats = torch.empty(len(self.train_items), chunks[0].shape[1])
            feats[torch.cat(order)] = torch.cat(chunks)
        classify = self.model.classifier()
        step = self.cfg.DATALOADER.TEST.BATCH_SIZE
        with self.autocast():
            logits = torch.cat([classify(feats[i:i + step].to(self.device)).float().cpu()
                                for i in range(0, len(feats), step)])
        labels = torch.as_tensor(self.given_labels)
        self.set_model_mode("train")
        return {"logits": logits, "probs": F.softmax(logits, dim=1), "features": feats,
                "loss": F.cross_entropy(logits, labels, reduction="none"),
                "labels": self.given_labels, "true_labels": self.true_labels}

    # ------------------------------------------------------------------ loaders over subsets
    def subset_loader(self, indices: np.ndarray, drop_last: Optional[bool] = None):
        """A training loader (training transform, DATALOADER.RANDOMNESS) over the items ``indices``
        (None when empty); its batches' ``index`` is the position in ``indices``. ``drop_last``
        None: Dassl's rule (drop the last partial batch); False: keep it."""
        if len(indices) == 0:
            return None
        items = [self.train_items[i] for i in indices]
        return build_train_loader(self.cfg, items, self.full_train_loader.dataset.transform,
                                  dataset_wrapper=wrapper_for(self.cfg.TRAINER.PTNL.DECODE_CACHE_MB),
                                  drop_last=drop_last)

    def after_epoch(self):
        super().after_epoch()
        self.train_loader_x = self.full_train_loader  # the full set again (checkpoints, the next epoch)

    # ------------------------------------------------------------------ partition diagnostics
    def before_train(self):
        super().before_train()
        log.info(self.settings_line())

    def before_epoch(self):
        super().before_epoch()
        self._partition = None

    def record_partition(self, predicted_noisy: np.ndarray, **extra) -> Dict:
        """Precision / recall of this epoch's noisy set against the true labels (or, where only some
        labels are verified, over the verified items): logged, sent to TensorBoard (``partition/*``)
        and kept in the epoch record (``partition``)."""
        rec = partition_scores(predicted_noisy, self.truly_noisy, known=self.noise_known)
        rec.update(extra)
        self._partition = rec
        fmt = lambda v: "n/a" if v is None else "{:.1f}%".format(v)  # noqa: E731
        scored = "" if self.noise_known is None else "; scored on the {} verified items".format(rec["num_scored"])
        log.info("* partition (epoch {}): {} clean, {} noisy; noisy-set precision {} recall {} ({} of {} "
                 "noisy found{})".format(self.epoch + 1, rec["num_clean"], rec["num_noisy"], fmt(rec["precision"]),
                                         fmt(rec["recall"]), rec["num_found"], rec["num_truly_noisy"], scored))
        for key in PARTITION_SCALARS:
            if rec.get(key) is not None:
                self.write_scalar("partition/" + key, rec[key], self.epoch + 1)
        return rec

    def epoch_record(self):
        rec = super().epoch_record()
        if self._partition is not None:
            rec["partition"] = dict(self._partition, epoch=rec["epoch"])
        return rec

    def results_record(self):
        record = super().results_record()
        parts = [r["partition"] for r in self.epoch_records if "partition" in r]
        record.update({"method": self.CFG_NODE.lower(), "partition": parts,
                       "partition_final": parts[-1] if parts else None,
                       "method_settings": {k: self.opts[k] for k in self.opts},
                       "method_preset": self.preset_record()})
        return record

    def _track_gradients(self, output, label, impaths):
        if not getattr(self, "_warned_analysis", False):
            log.warning("TRAINER.PTNL.ANALYSIS: per-sample gradient norms are not computed for {}".format(
                type(self).__name__))
            self._warned_analysis = True


def known_noise(dataset, items, given: np.ndarray, true: np.ndarray):
    """(truly noisy [N], noise known [N] or None, true label known [N] or None; None: for every item).
    A dataset that knows no true classes but verified some labels (``VERIFIED_LABELS``, Food-101N:
    ``verification_of(impath)`` is 1 when the folder label is right, 0 wrong, None not verified) is
    scored on its verified items: noisy when the label was verified wrong or relabelled by synthetic
    noise; the true label is known where the folder label was verified right."""
    relabelled = np.asarray(given) != np.asarray(true)
    if not (isinstance(dataset, PTNLDatasetBase) and dataset.VERIFIED_LABELS):
        return relabelled, None, None
    v = [dataset.verification_of(d.impath) for d in items]
    known = np.array([x is not None for x in v], dtype=bool)
    return np.array([x == 0 for x in v], dtype=bool) | relabelled, known, np.array([x == 1 for x in v], dtype=bool)


def selection_trainer(name: str):
    """The registered sample-selection trainer class called ``name``, or None (another trainer, or
    none of that name: the run's checks report it)."""
    registry = compat.TRAINER_REGISTRY
    if name not in registry.registered_names():
        return None
    cls = registry.get(name)
    return cls if isinstance(cls, type) and issubclass(cls, SampleSelectionTrainer) else None


def apply_method_presets(cfg, files: Iterable[str] = (), opts: Optional[Sequence] = None) -> Optional[str]:
    """Set a sample-selection trainer's preset values (``preset_of``: its release's per-dataset table,
    the pass transform RELEASE_BUGS implies) on the unfrozen ``cfg``, except the keys the user set in
    the config ``files`` or the ``opts`` they passed. Returns where the values came from (None for
    other trainers). Called once by train.py's config setup, which every script and engine goes through.

    Args:
        cfg: the merged config, not frozen.
        files: the yaml files merged into it (dataset and trainer configs).
        opts: the trailing ``KEY VALUE`` options.
    """
    cls = selection_trainer(cfg.TRAINER.NAME)
    if cls is None:
        return None
    values, source = cls.preset_of(cfg)
    explicit = presets.keys_set_by(files, opts)
    node = cfg.TRAINER[cls.CFG_NODE]
    for key, value in values.items():
        if "TRAINER.{}.{}".format(cls.CFG_NODE, key) not in explicit:
            node[key] = float(value) if isinstance(node[key], float) else value
    return source
