"""The sample-selection trainers: a base that partitions the noisy training set every epoch and
trains on index subsets of it, and the two methods on it, JoAPR and NLPrompt
(docs/methods.md; their algorithms are the pure functions of ``ptnl.selection``).

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
import time
import warnings
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ptnl import compat
from ptnl.data.decoded import wrapper_for
from ptnl.data.randomness import EpochSampler, PerSampleRandomness, build_train_loader, run_seed, set_loader_epoch, \
    stream_seed
from ptnl.errors import ConfigError, RunError
from ptnl.io import get_logger
from ptnl.losses import build_loss
from ptnl.selection import joapr, nlprompt, presets
from ptnl.selection.partition import partition_scores
from ptnl.trainers.prompt_tuning import PTNL
from ptnl.trainers.registry import register_trainer

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

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        mode = cfg.TRAINER[self.CFG_NODE].PASS_TRANSFORM
        if mode not in PASS_TRANSFORMS:
            raise ConfigError("TRAINER.{}.PASS_TRANSFORM must be one of {}, got {!r}".format(
                self.CFG_NODE, PASS_TRANSFORMS, mode))

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
            num_workers=cfg.DATALOADER.NUM_WORKERS)

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

    # ------------------------------------------------------------------ epochs of several loaders
    def run_batches(self, batches, num_batches: int):
        """Train on ``batches`` (an iterable of batch dicts), ``num_batches`` of them: the lr steps
        once, after the last (``forward_backward``)."""
        self.set_model_mode("train")
        self.num_batches = num_batches
        start = time.time()
        for self.batch_idx, batch in enumerate(batches):
            summary = self.forward_backward(batch)
            if (self.batch_idx + 1) % self.cfg.TRAIN.PRINT_FREQ == 0 or num_batches < self.cfg.TRAIN.PRINT_FREQ:
                print("epoch [{}/{}] batch [{}/{}] time {:.3f} loss {:.4f} acc {:.4f} lr {:.4e}".format(
                    self.epoch + 1, self.max_epoch, self.batch_idx + 1, num_batches,
                    (time.time() - start) / (self.batch_idx + 1), summary["loss"], summary["acc"],
                    self.get_current_lr()))
            n_iter = self.epoch * num_batches + self.batch_idx
            self.write_scalar("train/loss", summary["loss"], n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)


def known_noise(dataset, items, given: np.ndarray, true: np.ndarray):
    """(truly noisy [N], noise known [N] or None, true label known [N] or None; None: for every item).
    A dataset that knows no true classes but verified some labels (``verification_of(impath)``: 1 the
    folder label is right, 0 wrong, None not verified; Food-101N) is scored on its verified items: noisy
    when the label was verified wrong or relabelled by synthetic noise; the true label is known where
    the folder label was verified right."""
    relabelled = np.asarray(given) != np.asarray(true)
    verify = getattr(dataset, "verification_of", None)
    if verify is None:
        return relabelled, None, None
    v = [verify(d.impath) for d in items]
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


def cycled(loader, epoch: int):
    """The loader's batches forever, each cycle a new order (epoch key epoch * 1000 + cycle)."""
    cycle = 0
    while True:
        set_loader_epoch(loader, epoch * 1000 + cycle)
        yield from loader
        cycle += 1


def concat_batches(a: Optional[Dict], b: Optional[Dict]) -> Dict:
    """One batch of ``a``'s then ``b``'s samples (img, label, impath, index); either may be None."""
    parts = [x for x in (a, b) if x is not None]
    out = {}
    for key in ("img", "label", "index"):
        out[key] = torch.cat([torch.as_tensor(p[key]) for p in parts])
    out["impath"] = [path for p in parts for path in p["impath"]]
    return out


@register_trainer
class JoAPR(SampleSelectionTrainer):
    """JoAPR: warm-up with CE + confidence penalty; then each epoch a GMM on the per-sample loss
    (two thresholds) splits the set into X (clean, refined soft labels with weights w) and U (noisy,
    sharpened predictions), trained together with mixup and a uniform-prior term."""

    CFG_NODE = "JOAPR"

    def before_train(self):
        super().before_train()
        self._history, self._thres, self._main_epochs = [], 0.5, 0

    def in_warmup(self) -> bool:
        return self.epoch < self.opts.WARMUP_EPOCH

    def before_epoch(self):
        super().before_epoch()
        if self.in_warmup():
            return
        o = self.opts
        out = self.training_pass()
        loss = joapr.selection_loss(out["logits"], torch.as_tensor(self.given_labels)).numpy()
        self._history.append(joapr.minmax(loss))
        scores = joapr.averaged_loss(self._history, o.LOSS_WINDOW) if o.AVERAGE_LOSS else self._history[-1]
        p_given = out["probs"].gather(1, torch.as_tensor(self.given_labels).view(-1, 1)).squeeze(1).numpy()
        n = len(self.train_items)
        order = None
        if self.release:
            n = self.num_classes * self.cfg.DATASET.NUM_SHOTS  # the release's N: classes x shots
            order = np.random.default_rng(self.stream(self.epoch, 2)).permutation(len(self.train_items))
        part = joapr.partition(scores, p_given, self._thres, n, first=self._main_epochs == 0,
                               seed=self.stream(self.epoch, 3) % 2 ** 32, release=self.release, order=order)
        self._main_epochs += 1
        self._thres = part["thres"]
        clean = part["clean"]
        self._weights = part["weights"]
        self.record_partition(~clean, tau=None if np.isnan(part["tau"]) else part["tau"], thres=part["thres"],
                              gmm=part["gmm"])
        self._x_idx, self._u_idx = np.flatnonzero(clean), np.flatnonzero(~clean)
        if self.release and len(self._u_idx) == 0:
            raise RunError("JoAPR: the noisy set is empty at epoch {}; the released code crashes here "
                               "(TRAINER.JOAPR.RELEASE_BUGS True). Set TRAINER.JOAPR.RELEASE_BUGS False to train on "
                               "the clean set alone".format(self.epoch + 1))
        self._loader_x, self._loader_u = self.subset_loader(self._x_idx), self.subset_loader(self._u_idx)

    def run_epoch(self):
        if self.in_warmup():
            return super().run_epoch()  # the whole noisy set, CE + confidence penalty
        loaders = [ld for ld in (self._loader_x, self._loader_u) if ld is not None]
        num = max(len(ld) for ld in loaders)  # the longer loader's length, the shorter one cycled
        x_iter = cycled(self._loader_x, self.epoch) if self._loader_x is not None else None
        u_iter = cycled(self._loader_u, self.epoch) if self._loader_u is not None else None

        def batches():
            for _ in range(num):
                bx = next(x_iter) if x_iter is not None else None
                bu = next(u_iter) if u_iter is not None else None
                batch = concat_batches(bx, bu)
                nx = len(bx["impath"]) if bx is not None else 0
                batch["num_x"] = nx
                batch["weight"] = torch.as_tensor(self._weights[self._x_idx[bx["index"].numpy()]] if nx else
                                                  np.zeros(0), dtype=torch.float32)
                batch["index"] = torch.as_tensor(np.concatenate([
                    self._x_idx[bx["index"].numpy()] if nx else [], self._u_idx[bu["index"].numpy()] if bu is not None
                    else []]).astype(np.int64))
                yield batch
        self.run_batches(batches(), num)

    def compute_loss(self, batch):
        o = self.opts
        img, label = batch["img"], batch["label"]
        if self.in_warmup():
            logits = self.model(img)  # CE whatever TRAINER.PTNL.LOSS says, as the release
            return F.cross_entropy(logits.float(), label) + o.ALPHA1 * joapr.confidence_penalty(logits), logits
        nx = batch["num_x"]
        with torch.no_grad():
            logits_now = self.model(img)
            probs = F.softmax(logits_now.float(), dim=1)
            targets = torch.cat([
                joapr.refined_targets(batch["weight"].to(self.device), label[:nx], probs[:nx], o.TEMP),
                joapr.sharpen(probs[nx:], o.TEMP)])
        key = self.stream(self.epoch, self.batch_idx, 4)
        lam = joapr.mixup_lambda(np.random.default_rng(key), o.BETA)
        perm = torch.randperm(len(img), generator=torch.Generator().manual_seed(key)).to(self.device)
        mixed, mixed_targets = joapr.mixup(img, targets, lam, perm)
        logits = self.model(mixed)
        loss = joapr.soft_cross_entropy(logits, mixed_targets) + o.ALPHA2 * joapr.uniform_prior_penalty(logits)
        return loss, logits_now


@register_trainer
class NLPrompt(SampleSelectionTrainer):
    """NLPrompt: each epoch an optimal-transport plan between the images and the classes (POT's
    Sinkhorn, uniform marginals) gives pseudo-labels; items whose pseudo-label is their given label
    form X, trained with CE, then the others (U) with MAE on their given labels."""

    CFG_NODE = "NLPROMPT"
    RELEASE_PASS_TRANSFORM = "train"  # the release's OT pass runs over its training loader (augmented views)

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        o = cfg.TRAINER.NLPROMPT
        if o.COST not in nlprompt.COSTS:
            raise ConfigError("TRAINER.NLPROMPT.COST must be one of {}, got {!r}".format(nlprompt.COSTS, o.COST))
        if o.SOLVER not in nlprompt.SOLVERS:
            raise ConfigError("TRAINER.NLPROMPT.SOLVER must be one of {}, got {!r}".format(nlprompt.SOLVERS, o.SOLVER))
        if not o.REG > 0:
            raise ConfigError("TRAINER.NLPROMPT.REG must be > 0, got {}".format(o.REG))

    def build_loss(self):
        super().build_loss()
        self.subset_losses = {"x": build_loss("ce"), "u": build_loss("mae")}

    def before_epoch(self):
        super().before_epoch()
        o = self.opts
        out = self.training_pass()
        exclude = None
        if self.release:  # the release's pass has drop_last: its last partial batch never enters OT
            exclude = nlprompt.release_dropped(len(self.train_items), self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                                               self.stream(self.epoch, 5))
        pseudo, clean = nlprompt.nlprompt_partition(
            out["logits"], self.given_labels, o.REG, cost=o.COST, solver=o.SOLVER, num_iter=o.NUM_ITER,
            stop_thr=o.STOP_THR, exclude=exclude, allow_underflow=self.release)
        known = np.ones(len(pseudo), dtype=bool) if self.true_known is None else self.true_known
        self.record_partition(~clean, pseudo_label_accuracy=100.0 * float((pseudo == self.true_labels)[known].mean())
                              if known.any() else None)
        self._x_idx, self._u_idx = np.flatnonzero(clean), np.flatnonzero(~clean)
        self._loader_x, self._loader_u = (self.release_subset_loader(i) if self.release else
                                          self.subset_loader(i, drop_last=False) for i in (self._x_idx, self._u_idx))

    def release_subset_loader(self, indices: np.ndarray):
        """The release's subset loader: a deep copy of the full training loader with the other items
        deleted, so it keeps the full loader's drop_last (Dassl's: the full set holds a batch or more)
        whatever the subset's size; a subset smaller than a batch then trains no batch (None here)."""
        if len(self.train_items) >= self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE > len(indices):
            return None
        return self.subset_loader(indices, drop_last=None)  # Dassl's rule: the same as the full loader's here

    def run_epoch(self):
        phases = [(name, ld) for name, ld in (("x", self._loader_x), ("u", self._loader_u)) if ld is not None]

        def batches():
            for name, loader in phases:  # all of X (CE), then all of U (MAE): the release's order
                set_loader_epoch(loader, self.epoch)
                self._phase = name
                yield from loader
        num = sum(len(ld) for _, ld in phases)
        self.run_batches(batches(), num)
        if num == 0:  # no batch this epoch (the release's drop_last): the lr still steps once, as the release's
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # torch: "lr_scheduler.step() before optimizer.step()"
                self.update_lr()

    def compute_loss(self, batch):
        logits = self.model(batch["img"])
        return self.subset_losses[self._phase](logits, batch["label"]), logits
