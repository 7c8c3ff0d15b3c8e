"""Dassl 0.6.3's trainer life cycle: ``TrainerBase`` -> ``SimpleTrainer`` -> ``TrainerX``, the
trainer registry, and ``build_trainer``. Same hooks, log lines and checkpoint layout as Dassl;
resume and ``load_model`` work on current torch (see ``CheckpointIO``)."""
import datetime
import os
import os.path as osp
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

from .data import DataManager
from .evaluation import build_evaluator
from .utils import (AverageMeter, CheckpointError, MetricMeter, Registry, apply_checkpoint,
                    check_availability, checkpoint_fields, global_rng_state, load_checkpoint,
                    mkdir_if_missing, named_checkpoint, progress, save_checkpoint, set_global_rng_state,
                    tolist_if_not)

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg):
    avai_trainers = TRAINER_REGISTRY.registered_names()
    check_availability(cfg.TRAINER.NAME, avai_trainers)
    if cfg.VERBOSE:
        print("Loading trainer: {}".format(cfg.TRAINER.NAME))
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)


def checkpoint_to_load(folder, epoch=None):
    """The checkpoint of one model to load: ``model.pth.tar-<epoch>``; without an epoch,
    ``model-best.pth.tar`` where the run kept one (TEST.FINAL_MODEL best_val), else the newest
    ``model.pth.tar-N`` (our configs keep the last epoch, never a best one)."""
    if epoch is not None:
        path = osp.join(folder, "model.pth.tar-" + str(epoch))
        if not osp.exists(path):
            raise FileNotFoundError('Model not found at "{}" (the epochs saved there: {})'.format(
                path, ", ".join(str(e) for e in _saved_epochs(folder)) or "none"))
        return path
    best = osp.join(folder, "model-best.pth.tar")
    if osp.exists(best):
        return best
    epochs = _saved_epochs(folder)
    if not epochs:
        raise FileNotFoundError('No checkpoint in "{}" (neither model-best.pth.tar nor model.pth.tar-N): '
                                "--model-dir must be the output folder of a trained run".format(folder))
    path = osp.join(folder, "model.pth.tar-" + str(epochs[-1]))
    print("No model-best.pth.tar in {}: loading the newest checkpoint, epoch {} ({})".format(
        folder, epochs[-1], osp.basename(path)))
    return path


def resume_candidates(directory, names):
    """The checkpoints to resume from, newest first, as {model name: path}: the file every model's
    ``checkpoint`` names, then the ``model.pth.tar-N`` that every model has, by N descending."""
    folders = {name: osp.join(directory, name) for name in names}
    named = set()
    for folder in folders.values():
        try:
            named.add(named_checkpoint(folder))
        except OSError:
            named.add(None)
    order = [named.pop()] if len(named) == 1 and None not in named else []
    common = None
    for folder in folders.values():
        epochs = set(_saved_epochs(folder))
        common = epochs if common is None else common & epochs
    order += ["model.pth.tar-{}".format(e) for e in sorted(common or (), reverse=True)]
    out = []
    for fname in dict.fromkeys(order):
        if fname and all(osp.isfile(osp.join(folder, fname)) for folder in folders.values()):
            out.append({name: osp.join(folder, fname) for name, folder in folders.items()})
    return out


def set_aside(reason, paths):
    """Rename damaged checkpoint files to ``<name>.damaged`` so that no later resume or pruning
    takes them for good ones."""
    for path in paths:
        if path in reason and osp.isfile(path):
            try:
                os.replace(path, path + ".damaged")
            except OSError:
                pass


def _saved_epochs(folder):
    if not osp.isdir(folder):
        return []
    prefix = "model.pth.tar-"
    return sorted(int(f[len(prefix):]) for f in os.listdir(folder)
                  if f.startswith(prefix) and f[len(prefix):].isdigit())


class CheckpointIO:
    """Save, resume and load-model methods that work on current torch, shared by this engine and
    (as overrides) by PTNL's trainers running under real Dassl, whose versions fail there: its
    ``torch.load`` refuses its own checkpoints, and its ``load_model`` crashes on non-best ones.
    Checkpoints are Dassl's files plus ``rng_state`` (the global generators at the end of the
    epoch), which resuming puts back: a resumed run draws exactly what the uninterrupted one did.
    Files are loaded with ``weights_only=True`` (``load_checkpoint``); a damaged checkpoint is set
    aside with a warning and the previous kept one used (or training starts again)."""

    write_file = None  # (path, write_fn, mode) -> None: how checkpoint files are written (atomic_save)

    def checkpoint_extra(self):
        """Entries a trainer adds to each checkpoint (read back with ``resumed_checkpoint``)."""
        return {}

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        rng_state = global_rng_state()
        extra = self.checkpoint_extra()
        for name in self.get_model_names():
            model_dict = self._models[name].state_dict()
            optim_dict = self._optims[name].state_dict() if self._optims[name] is not None else None
            sched_dict = self._scheds[name].state_dict() if self._scheds[name] is not None else None
            save_checkpoint(
                dict({"state_dict": model_dict, "epoch": epoch + 1, "optimizer": optim_dict,
                      "scheduler": sched_dict, "val_result": val_result, "rng_state": rng_state}, **extra),
                osp.join(directory, name), is_best=is_best, model_name=model_name, write=self.write_file)

    def resume_model_if_exist(self, directory):
        """The start epoch: 0 without checkpoints; else that of the newest checkpoint every model
        has and that loads (a damaged one is renamed ``*.damaged`` with a warning, and the previous
        kept one tried; none left: training starts again, with a warning)."""
        names = self.get_model_names()
        self.resumed_checkpoint = None
        if any(not osp.exists(osp.join(directory, name, "checkpoint")) for name in names):
            print("No checkpoint found, train from scratch")
            return 0
        print("Found checkpoint at {} (will resume training)".format(directory))
        own = osp.abspath(directory) == osp.abspath(getattr(self, "output_dir", directory) or directory)
        for files in resume_candidates(directory, names):
            try:
                loaded = {name: checkpoint_fields(load_checkpoint(path), path) for name, path in files.items()}
                epochs = {c["epoch"] for c in loaded.values()}
                if len(epochs) > 1:
                    raise CheckpointError("Checkpoints {} are of different epochs ({})".format(
                        ", ".join(files.values()), sorted(epochs)))
            except CheckpointError as e:
                if not e.damaged:
                    raise
                print("Warning: {}; setting it aside and trying the previous kept checkpoint".format(e))
                if own:
                    set_aside(str(e), files.values())
                continue
            rng_state = None
            for name in names:
                print('Loading checkpoint from "{}"'.format(files[name]))
                checkpoint = apply_checkpoint(loaded[name], files[name], self._models[name], self._optims[name],
                                              self._scheds[name])
                rng_state = checkpoint.get("rng_state", rng_state)
            if rng_state is not None:
                set_global_rng_state(rng_state)
            else:
                print("The checkpoint holds no random-generator states (written by Dassl or an older PTNL): "
                      "the resumed run may draw differently from an uninterrupted one")
            self.resumed_checkpoint = checkpoint
            return checkpoint["epoch"]
        print("Warning: no readable checkpoint left in {}: training starts again from epoch 1".format(directory))
        return 0

    def load_model(self, directory, epoch=None):
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given "
                  "(ignore this if it's done on purpose)")
            return
        for name in self.get_model_names():
            model_path = checkpoint_to_load(osp.join(directory, name), epoch)
            checkpoint = checkpoint_fields(load_checkpoint(model_path), model_path)
            state_dict = checkpoint["state_dict"]
            for key in self.frozen_state_keys(name):
                state_dict.pop(key, None)
            val_result = checkpoint.get("val_result")
            print("Load {} to {} (epoch={}, val_result={})".format(
                model_path, name, checkpoint["epoch"],
                "{:.1f}".format(val_result) if val_result is not None else None))
            result = self._models[name].load_state_dict(state_dict, strict=False)
            check_loaded(self._models[name], result, model_path, self.frozen_state_keys(name))

    def frozen_state_keys(self, name):
        """State-dict keys of model ``name`` that are recomputed at build time and must not be
        overwritten by a checkpoint (CoOp: the token prefix and suffix buffers)."""
        return ()


def check_loaded(model, result, path, rebuilt=()):
    """``CheckpointError`` when loading ``path`` into ``model`` left a trainable parameter at its
    initial value (missing from the file) or the file holds tensors the model has no place for: a
    checkpoint of another prompt shape or trainer, which a non-strict load would evaluate silently.
    ``rebuilt``: keys the trainer recomputes itself (dropped from the file on purpose)."""
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    missing = sorted(k for k in result.missing_keys if k in trainable and k not in rebuilt)
    unexpected = sorted(result.unexpected_keys)
    if missing or unexpected:
        raise CheckpointError('Checkpoint "{}" does not fit the model it is loaded into:{}{} (a checkpoint of '
                              "another trainer or prompt shape?)".format(
                                  path, " missing trainable {}".format(", ".join(missing[:6])) if missing else "",
                                  " unexpected {}".format(", ".join(unexpected[:6])) if unexpected else ""))


class TrainerBase(CheckpointIO):
    """Generic loop and model bookkeeping."""

    def __init__(self):
        self._models = OrderedDict()
        self._optims = OrderedDict()
        self._scheds = OrderedDict()
        self._writer = None

    def register_model(self, name="model", model=None, optim=None, sched=None):
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot assign model before super().__init__() call")
        if self.__dict__.get("_optims") is None:
            raise AttributeError("Cannot assign optim before super().__init__() call")
        if self.__dict__.get("_scheds") is None:
            raise AttributeError("Cannot assign sched before super().__init__() call")
        assert name not in self._models, "Found duplicate model names"
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None):
        names_real = list(self._models.keys())
        if names is not None:
            names = tolist_if_not(names)
            for name in names:
                assert name in names_real
            return names
        return names_real

    def set_model_mode(self, mode="train", names=None):
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ["test", "eval"]:
                self._models[name].eval()
            else:
                raise KeyError

    def update_lr(self, names=None):
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss):
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def init_writer(self, log_dir):
        if self.__dict__.get("_writer") is None or self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional for the built-in engine
                print("TensorBoard is not installed: no event files are written")
                return
            print(f"Initialize tensorboard (log_dir={log_dir})")
            mkdir_if_missing(log_dir)  # only with a writer: no empty tensorboard/ without TensorBoard
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self):
        if self._writer is not None:
            self._writer.close()

    def write_scalar(self, tag, scalar_value, global_step=None):
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch, max_epoch):
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_epoch(self):
        pass

    def after_epoch(self):
        pass

    def run_epoch(self):
        raise NotImplementedError

    def test(self):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    def model_zero_grad(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss):
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss, names=None):
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


class SimpleTrainer(TrainerBase):
    """Config, data, test and checkpointing around the generic loop."""

    def __init__(self, cfg):
        super().__init__()
        self.check_cfg(cfg)
        if torch.cuda.is_available() and cfg.USE_CUDA:
            self.device = torch.device("cuda")
        else:
            self.device = torch.device("cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg):
        pass

    def build_data_loader(self):
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self):
        raise NotImplementedError(
            "The built-in engine has no SimpleNet: a trainer must define build_model()")

    def train(self):
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self):
        directory = self.cfg.OUTPUT_DIR
        if self.cfg.RESUME:
            directory = self.cfg.RESUME
        self.start_epoch = self.resume_model_if_exist(directory)
        self.init_writer(osp.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()

    def after_train(self):
        print("Finish training")
        do_test = not self.cfg.TEST.NO_TEST
        if do_test:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = round(time.time() - self.time_start)
        elapsed = str(datetime.timedelta(seconds=elapsed))
        print(f"Elapsed: {elapsed}")
        self.close_writer()

    def after_epoch(self):
        last_epoch = (self.epoch + 1) == self.max_epoch
        do_test = not self.cfg.TEST.NO_TEST
        meet_checkpoint_freq = ((self.epoch + 1) % self.cfg.TRAIN.CHECKPOINT_FREQ == 0
                                if self.cfg.TRAIN.CHECKPOINT_FREQ > 0 else False)
        if do_test and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result,
                                model_name="model-best.pth.tar")
        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)

    @torch.no_grad()
    def test(self, split=None):
        self.set_model_mode("eval")
        self.evaluator.reset()
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")
        for batch_idx, batch in enumerate(progress(data_loader)):
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names=None):
        names = self.get_model_names(names)
        return self._optims[names[0]].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """Trains on labelled data only."""

    def run_epoch(self):
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)
            meet_freq = (self.batch_idx + 1) % self.cfg.TRAIN.PRINT_FREQ == 0
            only_few_batches = self.num_batches < self.cfg.TRAIN.PRINT_FREQ
            if meet_freq or only_few_batches:
                print(batch_line(self, losses, batch_time, data_time))
            write_batch_scalars(self, losses)
            end = time.time()

    def parse_batch_train(self, batch):
        input = batch["img"].to(self.device)
        label = batch["label"].to(self.device)
        domain = batch["domain"].to(self.device)
        return input, label, domain


def batch_line(trainer, losses, batch_time, data_time):
    """Dassl's progress line of ``trainer``'s current training batch (epoch, batch, times,
    losses, lr, ETA); a function, so that a batch loop outside this ``run_epoch`` (PTNL's trainers',
    through ``ptnl.compat``) writes the same line under either engine."""
    nb_remain = (trainer.num_batches - trainer.batch_idx - 1
                 + (trainer.max_epoch - trainer.epoch - 1) * trainer.num_batches)
    eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
    info = [
        f"epoch [{trainer.epoch + 1}/{trainer.max_epoch}]",
        f"batch [{trainer.batch_idx + 1}/{trainer.num_batches}]",
        f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
        f"data {data_time.val:.3f} ({data_time.avg:.3f})",
        f"{losses}",
        f"lr {trainer.get_current_lr():.4e}",
        f"eta {eta}",
    ]
    return " ".join(info)


def write_batch_scalars(trainer, losses):
    """TensorBoard's per-batch training scalars of ``trainer``."""
    n_iter = trainer.epoch * trainer.num_batches + trainer.batch_idx
    for name, meter in losses.meters.items():
        trainer.write_scalar("train/" + name, meter.avg, n_iter)
    trainer.write_scalar("train/lr", trainer.get_current_lr(), n_iter)
