"""What every PTNL trainer shares, on top of the engine's ``TrainerX``: the training set (label
noise for datasets that added none, true-label tracking), CLIP loading, the optimiser of each
trainable part, the training step (precision, gradient scaling, analysis and diagnostics around
one overridable ``compute_loss``), resumable checkpoints, evaluation (``evaluation``) and
``results.json`` / ``noise.json`` / ``epochs.json``."""
import contextlib
import json
import os
import os.path as osp
import re
import time
from typing import Dict, Tuple

import numpy as np
import torch

from ptnl import compat
from ptnl import plugins  # noqa: F401  (registers the built-in local weights names, e.g. "pocket")
from ptnl.clip.preprocess import check_input_size
from ptnl.clip.weights import effective_precision, load_clip
from ptnl.data.base import PTNLDatasetBase
from ptnl.data.decoded import wrapper_for
from ptnl.data.manager import RunData
from ptnl.data.randomness import check_randomness, set_loader_epoch
from ptnl.config import added_defaults, check_values
from ptnl.errors import ConfigError, PTNLError
from ptnl.io import atomic_write, get_logger, write_json_atomic
from ptnl.io.cache import check_verify
from ptnl.losses import loss_from_cfg, loss_line, loss_options
from ptnl.noise import TrainingSet, check_protocol, label_training_set
from ptnl.runs.files import DIAG_FILE, DIVERGED_FILE, NOISE_FILE, RESULTS_FILE, config_digest
from ptnl.runs.identity import flat_config, settings_digest
from ptnl.trainers.class_transfer import class_transfer_problem, trained_classnames
from ptnl.trainers.diagnostics import SCALARS, EpochDiagnostics, epoch_line, per_sample_grad_norms
from ptnl.trainers import preemption
from ptnl.trainers.evaluation import FeatureEvaluation
from ptnl.trainers.registry import config_sections
from ptnl.trainers.train_probs import save_train_probs

log = get_logger(__name__)

PRECISIONS = ("fp16", "fp32", "amp", "bf16")


class TrainingDiverged(PTNLError, ValueError):
    """The loss became NaN or infinite (exit status 4; ``diverged.json`` records where)."""
    exit_code = 4


class CheckpointFileError(PTNLError, OSError):
    """A checkpoint that is damaged, refused (not plain weights and states) or of other settings."""


@contextlib.contextmanager
def _checkpoint_errors():
    """The engine's ``CheckpointError`` (it imports nothing of PTNL) as a one-line user error."""
    try:
        yield
    except compat.CheckpointError as e:
        raise CheckpointFileError(str(e)) from None


class PTNLTrainerBase(FeatureEvaluation, compat.TrainerX):
    """Subclasses build ``self.model`` (logits from images) and register its trainable part
    (``build_model``); a trainer that changes what is optimised overrides ``compute_loss``."""

    USES_LOSS = True  # False: TRAINER.PTNL.LOSS steers nothing (no loss, or the method's own): tables show none
    USES_SEED = True  # False: nothing depends on the seed (nothing drawn, nothing trained): one seed is all
    # COLOUR = "#RRGGBB" (its own, not inherited) and LINE_STYLE = (marker, linestyle): its look in figures
    TRAINS = True  # False: no epoch loop (ZeroshotCLIP, LinearProbe)
    PROMPT_SETTINGS = False  # True: N_CTX, CSC, CLASS_TOKEN_POSITION, CTX_INIT shape the model
    SAVE_TEST_LOGITS = False  # True: always write test_logits.pt (else TRAINER.PTNL.SAVE_TEST_LOGITS)
    GROUPABLE = False  # True: trains only through this class's training step (ptnl.trainers.group)

    # Dassl's own versions fail on current torch; these work under both engines.
    write_file = staticmethod(atomic_write)  # checkpoints: atomic, a full disk named with the space needed

    def resume_model_if_exist(self, directory):
        with _checkpoint_errors():
            return compat.CheckpointIO.resume_model_if_exist(self, directory)

    def load_model(self, directory, epoch=None):
        if directory and self.get_model_names():  # a per-class state refuses other classes (class_transfer)
            problem = class_transfer_problem(trained_classnames(directory), self.dm.dataset.classnames,
                                             self.class_specific_state(), directory)
            if problem:
                raise CheckpointFileError(problem)
        with _checkpoint_errors():
            return compat.CheckpointIO.load_model(self, directory, epoch)

    def class_specific_state(self) -> str:
        """What of the trained state holds one part per class ("" when nothing does; a trainer whose
        trained state is class-agnostic returns ""): by default, all of it (a head's rows)."""
        return "trained parameters ({})".format(", ".join(self.get_model_names()))

    def __init__(self, cfg):
        self._wall_start = time.time()
        super().__init__(cfg)

    # ------------------------------------------------------------------ config and data
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.__dict__.get("check_cfg", classmethod(print)), classmethod):
            raise TypeError("{}.check_cfg must be a @classmethod: train.py checks a config before it builds the "
                            "trainer".format(cls.__qualname__))

    @classmethod
    def check_cfg(cls, cfg):
        """The config's checks, before the trainer is built (``train.py --dry-run`` runs them too)."""
        check_values(cfg)  # every key's type and range: one line naming the key and what it takes
        opts = cfg.TRAINER.PTNL
        if opts.PREC not in PRECISIONS:
            raise ConfigError("TRAINER.PTNL.PREC must be one of {}, got {!r}".format(PRECISIONS, opts.PREC))
        loss_from_cfg(cfg)  # unknown loss or bad option: fail before any data is read
        check_protocol(cfg.DATASET.NOISE.RATE, cfg.DATASET.NOISE.TYPE, cfg.DATASET.NOISE.MODE)
        check_randomness(cfg)
        check_verify(opts.CACHE_VERIFY)  # an unknown mode fails now, not at the first cached feature

    def build_data_loader(self):
        """Dassl's data (``RunData``: dataset, transforms, evaluation loaders, summary), the run's
        training set (``training_set``), and the training loader built once over its items."""
        self.dm = dm = RunData(self.cfg)
        self.training = self.training_set(dm.dataset)
        self.train_items = self.training.items
        self.true_label_of = self.training.true_label_of()
        self.noise_record = self.training.record
        wrapper = wrapper_for(self.cfg.TRAINER.PTNL.DECODE_CACHE_MB) if self.TRAINS else None
        self.train_loader_x = dm.build_train_loader(self.train_items, dataset_wrapper=wrapper)
        self.train_loader_u, self.val_loader, self.test_loader = dm.train_loader_u, dm.val_loader, dm.test_loader
        self.num_classes, self.num_source_domains, self.lab2cname = dm.num_classes, dm.num_source_domains, dm.lab2cname

    def training_set(self, dataset) -> TrainingSet:
        """The run's ``TrainingSet`` (items to train on, their true labels, noise record or None).
        PTNL's datasets labelled theirs when built; any other dataset (a CoOp fork's) gets the same
        call here, without the full training split (so only DATASET.NOISE.MODE flip works there)."""
        if isinstance(dataset, PTNLDatasetBase):
            return dataset.training_set
        return label_training_set(self.cfg, dataset.train_x, pool=None, lab2cname=dataset.lab2cname)

    # ------------------------------------------------------------------ model helpers
    @property
    def precision(self):
        return effective_precision(self.cfg.TRAINER.PTNL.PREC, self.device)

    def build_loss(self):
        self.loss_fn = loss_from_cfg(self.cfg)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None

    def load_clip_model(self):
        """CLIP by MODEL.BACKBONE.NAME (name or file), on CPU; its input size must be INPUT.SIZE."""
        name = self.cfg.MODEL.BACKBONE.NAME
        log.info(f"Loading CLIP (backbone: {name})")
        clip_model = load_clip(name, device="cpu", prec=self.precision)
        self.clip_weights_path = clip_model.weights_path
        check_input_size(self.cfg.INPUT.SIZE, clip_model.visual.input_resolution, name)
        return clip_model

    def register_trainable(self, name, module):
        """Optimizer and lr scheduler for ``module`` (Dassl's builders), registered as ``name``.
        Frozen parameters of ``module`` get no gradient, so the optimizer leaves them alone."""
        optim = compat.build_optimizer(module, self.cfg.OPTIM)
        sched = compat.build_lr_scheduler(optim, self.cfg.OPTIM)
        self.register_model(name, module, optim, sched)
        self.build_loss()

    def trainable_parameters(self):
        return [p for name in self.get_model_names() for p in self._models[name].parameters()
                if p.requires_grad]

    def freeze_all_but(self, model, trainable_prefixes):
        """Freeze every parameter whose name does not start with one of ``trainable_prefixes``."""
        for name, param in model.named_parameters():
            param.requires_grad_(any(name.startswith(p) for p in trainable_prefixes))

    # ------------------------------------------------------------------ the batch loop
    def run_epoch(self):
        """One pass over the training loader: Dassl's ``run_epoch``, through ``run_batches``."""
        self.run_batches(self.train_loader_x, len(self.train_loader_x))

    def run_batches(self, batches, num_batches: int):
        """The one batch loop of every PTNL trainer (a lone run, a sample-selection method's own
        batches, and, batch by batch through ``start_batches`` / ``train_batch``, grouped runs):
        ``forward_backward`` on each of ``batches`` (``num_batches`` of them; the lr steps after
        the last), Dassl's progress line and per-batch TensorBoard scalars."""
        meters = self.start_batches(num_batches)
        end = time.time()
        for batch_idx, batch in enumerate(batches):
            started = time.time()
            self.train_batch(batch_idx, batch, meters, started - end, started)
            end = time.time()

    def start_batches(self, num_batches: int):
        """Train mode, the epoch's batch count, and fresh meters (losses, batch time, data time)."""
        self.set_model_mode("train")
        self.num_batches = num_batches
        return compat.MetricMeter(), compat.AverageMeter(), compat.AverageMeter()

    def train_batch(self, batch_idx: int, batch, meters, data_seconds: float, started: float) -> Dict:
        """One training batch: ``forward_backward``, the meters, Dassl's progress line every
        TRAIN.PRINT_FREQ batches (or every batch when the epoch has fewer), the scalars.
        ``data_seconds``: the wait for the batch; ``started``: when its training began."""
        losses, batch_time, data_time = meters
        self.batch_idx = batch_idx
        summary = self.forward_backward(batch)
        data_time.update(data_seconds)
        batch_time.update(data_seconds + time.time() - started)
        losses.update(summary)
        freq = self.cfg.TRAIN.PRINT_FREQ
        if (batch_idx + 1) % freq == 0 or self.num_batches < freq:
            log.info(compat.batch_line(self, losses, batch_time, data_time))
        compat.write_batch_scalars(self, losses)
        return summary

    # ------------------------------------------------------------------ training step
    def parse_batch_train(self, batch):  # non_blocking: a pinned batch (CUDA loaders pin) copies asynchronously
        return batch["img"].to(self.device, non_blocking=True), batch["label"].to(self.device, non_blocking=True)

    def autocast(self):
        """The precision context of the forward pass: autocast under amp (fp16, CUDA) and bf16
        (bfloat16 on the run's device; the weights and their updates stay fp32)."""
        if self.precision == "amp":
            return torch.autocast("cuda")
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def compute_loss(self, batch: Dict) -> Tuple[torch.Tensor, torch.Tensor]:
        """(loss to minimise, logits [B, C]) of a batch whose ``img`` and ``label`` are on the
        device; ``impath`` and ``index`` name its samples. The seam for a trainer that weights
        samples or changes the loss: ``self.loss_fn.per_sample(logits, labels)`` gives one loss per
        sample, ``self.true_labels_of(batch)`` the true labels (for analysis only). Runs under
        ``self.autocast()``; precision, gradient scaling, analysis and diagnostics stay in
        ``forward_backward``."""
        logits = self.model(batch["img"])
        return self.loss_fn(logits, batch["label"]), logits

    def true_labels_of(self, batch: Dict) -> np.ndarray:
        return np.array([self.true_label_of[p] for p in batch["impath"]])

    def forward_backward(self, batch):
        self._check_stop()
        image, label = self.parse_batch_train(batch)
        batch = dict(batch, img=image, label=label)
        if self.precision == "amp":
            with self.autocast():
                loss, output = self.compute_loss(batch)
            self.model_zero_grad()
            self.detect_anomaly(loss)
            self.scaler.scale(loss).backward()
            for name in self.get_model_names():
                self.scaler.step(self._optims[name])
            self.scaler.update()
        else:
            with self.autocast():  # bf16; a no-op for fp32 and fp16
                loss, output = self.compute_loss(batch)
            if self.cfg.TRAINER.PTNL.ANALYSIS:
                self._track_gradients(output, label, batch["impath"])
            self.model_backward_and_update(loss)
        self._track(output.detach(), label, batch["impath"], loss.item())
        summary = {"loss": loss.item(), "acc": compat.compute_accuracy(output, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def detect_anomaly(self, loss):
        """A NaN or infinite loss stops the run: one line naming the epoch, the batch and the likely
        cause, and ``diverged.json`` (no ``results.json``) so that reports list the run as diverged."""
        if torch.isfinite(loss).all():
            return
        value = loss.detach().float().reshape(-1)
        bad = value[~torch.isfinite(value)][0].item()
        epoch, batch = getattr(self, "epoch", 0) + 1, getattr(self, "batch_idx", 0) + 1
        lr = self.get_current_lr()
        causes = ["the learning rate is too high (OPTIM.LR {}; {:.4g} in this epoch)".format(self.cfg.OPTIM.LR, lr)]
        if self.precision in ("fp16", "amp", "bf16"):
            causes.append("{} precision overflowed (try TRAINER.PTNL.PREC fp32)".format(self.precision))
        likely = " or ".join(causes)
        path = osp.join(self.output_dir, DIVERGED_FILE)
        message = ("Training diverged at epoch {}/{}, batch {}/{}: the loss is {}. Likely cause: {}. No results "
                   "written; {} records it".format(epoch, self.max_epoch, batch, getattr(self, "num_batches", "?"),
                                                   bad, likely, path))
        record = {"diverged": True, "epoch": epoch, "batch": batch, "num_batches": getattr(self, "num_batches", None),
                  "max_epoch": self.max_epoch, "loss_value": str(bad), "lr": lr, "likely_cause": likely,
                  "message": message}
        record.update(self.run_fields())
        write_json_atomic(path, record)
        raise TrainingDiverged(message)

    # ------------------------------------------------------------------ preemption (SIGTERM, SIGUSR1)
    def _check_stop(self):
        """At a batch boundary: stop for a signal once the finished epochs are on disk."""
        if preemption.requested():
            preemption.check(self, getattr(self, "_saved_epochs", 0), self.epoch)

    def checkpoint_extra(self):
        """The epoch records so far go into each checkpoint: resuming needs no other file."""
        return {"epoch_records": list(getattr(self, "epoch_records", []))}

    # ------------------------------------------------------------------ diagnostics
    def before_epoch(self):
        set_loader_epoch(self.train_loader_x, self.epoch)  # per_sample randomness: this epoch's order and draws
        self._diag = EpochDiagnostics(self.get_current_lr())

    def _track(self, output, label, impaths, loss):
        true = np.array([self.true_label_of[p] for p in impaths])
        self._diag.track(output.argmax(dim=1).cpu().numpy(), label.cpu().numpy(), true, loss)

    def per_sample_grad_norms(self, output, label):
        """||d loss(x_i, y_i) / d theta|| for each sample of the batch, theta = every trainable
        parameter, from the batch's forward graph (kept for the regular backward)."""
        return per_sample_grad_norms(self.loss_fn, output, label, self.trainable_parameters())

    def _track_gradients(self, output, label, impaths):
        norms = self.per_sample_grad_norms(output, label)
        true = np.array([self.true_label_of[p] for p in impaths])
        self._diag.track_gradients(norms, true != label.cpu().numpy())

    def epoch_record(self):
        """This epoch's training diagnostics, on the augmented views seen while training."""
        return self._diag.record(self.epoch + 1)

    def after_epoch(self):
        rec = self.epoch_record()
        log.info(epoch_line(rec))
        for key in SCALARS:
            if rec.get(key) is not None:  # TensorBoard, when a writer is open
                self.write_scalar("diagnostics/" + key, rec[key], rec["epoch"])
        self.epoch_records = [r for r in self.epoch_records if r["epoch"] < rec["epoch"]] + [rec]
        write_json_atomic(osp.join(self.output_dir, DIAG_FILE), self.epoch_records)
        super().after_epoch()
        if preemption.requested():  # a stop signal came during this epoch: save it, then stop
            if getattr(self, "_saved_epochs", 0) < self.epoch + 1:
                self.save_model(self.epoch, self.output_dir)
            preemption.check(self, self._saved_epochs, self.epoch + 1)

    # ------------------------------------------------------------------ life cycle
    def before_train(self):
        log.info("Loss: {}".format(loss_line(self.cfg)))
        if self.noise_record is not None:
            write_json_atomic(osp.join(self.output_dir, NOISE_FILE), self.noise_record)
            log.info("Label noise: {} {} rate {} -> {} noisy of {} (realised {:.4f})".format(
                self.noise_record["type"], self.noise_record["mode"], self.noise_record["rate"],
                self.noise_record["num_noisy"], self.noise_record["num_samples"],
                self.noise_record["realised_rate"]))
        stale = osp.join(self.output_dir, DIVERGED_FILE)
        if osp.isfile(stale):  # a run that diverged before is trained again (new settings or a retry)
            os.remove(stale)
        super().before_train()
        self._saved_epochs = self.start_epoch
        records = (getattr(self, "resumed_checkpoint", None) or {}).get("epoch_records")
        if records is None and self.start_epoch > 0:
            records = self._read_epoch_records()
        self.epoch_records = [r for r in records or [] if r["epoch"] <= self.start_epoch]
        preemption.defer(True)

    def _read_epoch_records(self):
        """``epochs.json`` of a run resumed from a checkpoint without epoch records (older PTNL)."""
        path = osp.join(self.output_dir, DIAG_FILE)
        try:
            with open(path) as f:
                records = json.load(f)
            assert isinstance(records, list) and all(isinstance(r, dict) and "epoch" in r for r in records)
            return records
        except FileNotFoundError:
            return []
        except (OSError, ValueError, AssertionError) as e:
            log.warning("Warning: {} is damaged ({}); the epochs before the resume have no diagnostics".format(
                path, type(e).__name__))
            return []

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        compat.CheckpointIO.save_model(self, epoch, directory, is_best=is_best, val_result=val_result,
                                       model_name=model_name)  # with the random states (Dassl's has none)
        if not model_name:
            self._saved_epochs = epoch + 1
        keep = self.cfg.TRAINER.PTNL.KEEP_CHECKPOINTS
        if model_name or keep <= 0:
            return
        for name in self.get_model_names():  # older periodic checkpoints: keep the newest `keep`
            folder = osp.join(directory, name)
            found = sorted((int(m.group(1)), f) for f in os.listdir(folder)
                           if (m := re.fullmatch(r"model\.pth\.tar-(\d+)", f)))
            for _, f in found[:-keep]:
                os.remove(osp.join(folder, f))

    def train(self):
        if not self.TRAINS:  # nothing to optimise epoch by epoch: fit (if anything), then test
            self.epoch_records = []
            self.time_start = time.time()
            self.fit()
            self.after_train()
            return
        super().train()

    def fit(self):
        """One-shot fitting for trainers without an epoch loop (LinearProbe)."""

    def after_train(self):
        self.last_test = None
        preemption.defer(False)  # the final test: a stop signal stops at once (the last epoch is saved)
        super().after_train()
        if self.last_test is not None:
            if self.cfg.TRAINER.PTNL.SAVE_TRAIN_PROBS:  # the tested model's probabilities (cleanlab's layout)
                save_train_probs(self)
            write_json_atomic(osp.join(self.output_dir, RESULTS_FILE), self.results_record())

    def prompt_settings(self):
        """The prompt shape of prompt trainers (None for the others): part of a run's identity."""
        if not self.PROMPT_SETTINGS:
            return None
        o = self.cfg.TRAINER.PTNL
        learner = self.model.prompt_learner
        return {"n_ctx": learner.n_ctx, "csc": o.CSC, "class_token_position": o.CLASS_TOKEN_POSITION,
                "ctx_init": o.CTX_INIT}

    def results_record(self):
        record = dict(self.last_test)
        record.update(self.run_fields())
        record["wall_time_s"] = time.time() - self._wall_start
        return record

    def run_fields(self):
        """What identifies the run and how it ran: ``results.json``'s keys besides the test's
        (``diverged.json`` holds them too)."""
        cfg = self.cfg
        nr = self.noise_record
        from_file = bool(nr and "file" in nr)  # DATASET.NOISE.FILE: the file's protocol, not the config's unused keys
        noise = {"type": nr["type"] if from_file else cfg.DATASET.NOISE.TYPE,
                 "mode": nr["mode"] if from_file else cfg.DATASET.NOISE.MODE,
                 "rate": nr["rate"] if from_file else cfg.DATASET.NOISE.RATE,
                 "realised_rate": nr["realised_rate"] if nr else 0.0,
                 "num_noisy": nr["num_noisy"] if nr else 0,
                 "generator": nr["generator"] if nr else None}
        return {
            "trainer": cfg.TRAINER.NAME, "dataset": cfg.DATASET.NAME,
            "backbone": cfg.MODEL.BACKBONE.NAME, "seed": cfg.SEED,
            "num_shots": cfg.DATASET.NUM_SHOTS, "noise": noise, "loss": cfg.TRAINER.PTNL.LOSS,
            "prompt": self.prompt_settings(),
            "gce_q": cfg.TRAINER.PTNL.GCE_Q if cfg.TRAINER.PTNL.LOSS == "gce" else None,
            "loss_options": loss_options(cfg),  # every option of the loss with its default: tables show changed ones
            "classnames": list(self.dm.dataset.classnames),
            "epochs": getattr(self, "epoch_records", []),
            "engine": {"name": compat.ENGINE, "version": compat.ENGINE_VERSION},
            "precision": self.precision,
            "randomness": cfg.DATALOADER.RANDOMNESS, "num_workers": cfg.DATALOADER.NUM_WORKERS,
            "config_digest": config_digest(cfg),
            "config": flat_config(cfg),  # every key; settings_digest: those that can change results
            "config_sections": config_sections(type(self), cfg),  # the TRAINER.<S>. sections it reads
            "config_defaults": added_defaults(),  # PTNL's and plugins' keys' defaults: readers without the plugins
            "settings_digest": settings_digest(flat_config(cfg), config_sections(type(self), cfg)),
        }
