"""What every PTNL trainer shares, on top of the engine's ``TrainerX``: label noise for datasets
that added none, true-label tracking, the loss, per-epoch clean/noisy diagnostics, resumable
checkpoints, and ``results.json`` / ``noise.json``."""
import json
import os
import os.path as osp
import re
import time

import numpy as np
import torch

from ptnl import compat
from ptnl.clip_backbone import effective_precision, load_clip
from ptnl.losses import loss_from_cfg
from ptnl.dataset_base import add_label_noise, atomic_write
from ptnl.noise import NoiseError, check_protocol
from ptnl.fastdata import wrapper_for
from ptnl.results import NOISE_FILE, RESULTS_FILE, config_digest, write_json_atomic
from ptnl.zeroshot import cached_image_features

PRECISIONS = ("fp16", "fp32", "amp")
DIAG_FILE = "epochs.json"
LOGITS_FILE = "test_logits.pt"


class PTNLTrainerBase(compat.TrainerX):
    """Subclasses build ``self.model`` (logits from images) and register its trainable part."""

    TRAINS = True  # False: no epoch loop (ZeroshotCLIP, LinearProbe)
    PROMPT_SETTINGS = False  # True: N_CTX, CSC, CLASS_TOKEN_POSITION, CTX_INIT shape the model
    SAVE_TEST_LOGITS = False  # True: always write test_logits.pt (else TRAINER.PTNL.SAVE_TEST_LOGITS)

    # Dassl's own versions fail on current torch; these work under both engines.
    resume_model_if_exist = compat.CheckpointIO.resume_model_if_exist
    load_model = compat.CheckpointIO.load_model

    def __init__(self, cfg):
        self._wall_start = time.time()
        super().__init__(cfg)

    # ------------------------------------------------------------------ config and data
    def check_cfg(self, cfg):
        opts = cfg.TRAINER.PTNL
        if opts.PREC not in PRECISIONS:
            raise ValueError("TRAINER.PTNL.PREC must be one of {}, got {!r}".format(PRECISIONS, opts.PREC))
        loss_from_cfg(cfg)  # unknown loss or bad option: fail before any data is read
        check_protocol(cfg.DATASET.NOISE.RATE, cfg.DATASET.NOISE.TYPE, cfg.DATASET.NOISE.MODE)

    def build_data_loader(self):
        super().build_data_loader()
        dataset = self.dm.dataset
        train, true_labels, self.noise_record = self.training_set(dataset)
        self.true_label_of = {d.impath: t for d, t in zip(train, true_labels)}
        if train is not self._loader_source or (self.TRAINS and self.cfg.TRAINER.PTNL.DECODE_CACHE_MB > 0):
            dataset._train_x = train
            self.train_loader_x = self.dm.train_loader_x = self._rebuild_train_loader(train)

    def training_set(self, dataset):
        """(items to train on, their true labels, noise record or None). PTNL's datasets added
        the noise themselves; a CoOp fork's dataset gets it here, from the same function."""
        if hasattr(dataset, "noise_record"):
            return dataset.train_x, dataset.true_labels, dataset.noise_record
        noise = self.cfg.DATASET.NOISE
        if noise.RATE == 0:
            return dataset.train_x, [d.label for d in dataset.train_x], None
        if noise.MODE == "swap":
            raise NoiseError("DATASET.NOISE.MODE swap needs the full training split, which dataset {} does "
                             "not expose (a PTNL dataset class does). Use DATASET.NOISE.MODE flip.".format(
                                 self.cfg.DATASET.NAME))
        return add_label_noise(self.cfg, dataset.train_x, None, dataset.lab2cname)

    @property
    def _loader_source(self):
        return self.dm.train_loader_x.dataset.data_source

    def _rebuild_train_loader(self, data_source):
        """The train loader over ``data_source``, as Dassl builds it, with decoded images kept in
        memory when TRAINER.PTNL.DECODE_CACHE_MB allows."""
        x = self.cfg.DATALOADER.TRAIN_X
        return compat.build_data_loader(
            self.cfg, sampler_type=x.SAMPLER, data_source=data_source, batch_size=x.BATCH_SIZE,
            n_domain=x.N_DOMAIN, n_ins=x.N_INS, tfm=self.dm.train_loader_x.dataset.transform,
            is_train=True, dataset_wrapper=wrapper_for(self.cfg.TRAINER.PTNL.DECODE_CACHE_MB))

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
        print(f"Loading CLIP (backbone: {name})")
        clip_model = load_clip(name, device="cpu", prec=self.precision)
        self.clip_weights_path = clip_model.weights_path
        res = clip_model.visual.input_resolution
        if tuple(self.cfg.INPUT.SIZE) != (res, res):
            raise ValueError("INPUT.SIZE {} does not match the CLIP input resolution {} of {}; set "
                             "INPUT.SIZE ({}, {})".format(tuple(self.cfg.INPUT.SIZE), res, name, res, res))
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

    # ------------------------------------------------------------------ training step
    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        if self.precision == "amp":
            with torch.autocast("cuda"):
                output = self.model(image)
            loss = self.loss_fn(output, label)
            self.model_zero_grad()
            self.detect_anomaly(loss)
            self.scaler.scale(loss).backward()
            for name in self.get_model_names():
                self.scaler.step(self._optims[name])
            self.scaler.update()
        else:
            output = self.model(image)
            loss = self.loss_fn(output, label)
            if self.cfg.TRAINER.PTNL.ANALYSIS:
                self._track_gradients(output, label, batch["impath"])
            self.model_backward_and_update(loss)
        self._track(output.detach(), label, batch["impath"], loss.item())
        summary = {"loss": loss.item(), "acc": compat.compute_accuracy(output, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    # ------------------------------------------------------------------ diagnostics
    def before_epoch(self):
        self._epoch_lr = self.get_current_lr()
        self._diag = {"n": 0, "loss_sum": 0.0, "correct_given": 0, "clean": 0, "clean_correct": 0,
                      "noisy": 0, "noisy_given": 0, "noisy_true": 0}

    def _track(self, output, label, impaths, loss):
        pred = output.argmax(dim=1).cpu().numpy()
        given = label.cpu().numpy()
        true = np.array([self.true_label_of[p] for p in impaths])
        noisy = true != given
        d = self._diag
        d["n"] += len(pred)
        d["loss_sum"] += loss * len(pred)
        d["correct_given"] += int((pred == given).sum())
        d["clean"] += int((~noisy).sum())
        d["clean_correct"] += int((pred == given)[~noisy].sum())
        d["noisy"] += int(noisy.sum())
        d["noisy_given"] += int((pred == given)[noisy].sum())
        d["noisy_true"] += int((pred == true)[noisy].sum())

    def per_sample_grad_norms(self, output, label):
        """||d loss(x_i, y_i) / d theta|| for each sample of the batch, theta = every trainable
        parameter, from the batch's forward graph (kept for the regular backward)."""
        params = self.trainable_parameters()
        norms = []
        for i in range(len(label)):
            grads = torch.autograd.grad(self.loss_fn(output[i:i + 1], label[i:i + 1]), params,
                                        retain_graph=True, allow_unused=True)
            norms.append(float(sum((g.float() ** 2).sum() for g in grads if g is not None)) ** 0.5)
        return np.array(norms)

    def _track_gradients(self, output, label, impaths):
        norms = self.per_sample_grad_norms(output, label)
        true = np.array([self.true_label_of[p] for p in impaths])
        noisy = true != label.cpu().numpy()
        d = self._diag
        d["grad_clean_sum"] = d.get("grad_clean_sum", 0.0) + float(norms[~noisy].sum())
        d["grad_noisy_sum"] = d.get("grad_noisy_sum", 0.0) + float(norms[noisy].sum())

    def epoch_record(self):
        """This epoch's training diagnostics, on the augmented views seen while training."""
        d = self._diag

        def pct(a, b):
            return 100.0 * a / b if b else None
        return {"epoch": self.epoch + 1, "lr": self._epoch_lr, "loss": d["loss_sum"] / max(d["n"], 1),
                "train_acc_given": pct(d["correct_given"], d["n"]),
                "clean_acc": pct(d["clean_correct"], d["clean"]),
                "noisy_memorised": pct(d["noisy_given"], d["noisy"]),
                "noisy_true": pct(d["noisy_true"], d["noisy"]),
                "num_clean": d["clean"], "num_noisy": d["noisy"],
                **({"grad_norm_clean": d["grad_clean_sum"] / d["clean"] if d["clean"] else None,
                    "grad_norm_noisy": d["grad_noisy_sum"] / d["noisy"] if d["noisy"] else None}
                   if "grad_clean_sum" in d else {})}

    def after_epoch(self):
        rec = self.epoch_record()
        fmt = lambda v: "n/a" if v is None else "{:.1f}%".format(v)  # noqa: E731
        line = ("* epoch {}: loss {:.4f} lr {:.4e} train acc {} clean acc {} noisy->given {} "
                "noisy->true {}".format(rec["epoch"], rec["loss"], rec["lr"], fmt(rec["train_acc_given"]),
                                        fmt(rec["clean_acc"]), fmt(rec["noisy_memorised"]),
                                        fmt(rec["noisy_true"])))
        if "grad_norm_clean" in rec:
            g = lambda v: "n/a" if v is None else "{:.4e}".format(v)  # noqa: E731
            line += " grad norm clean {} noisy {}".format(g(rec["grad_norm_clean"]), g(rec["grad_norm_noisy"]))
        print(line)
        for key in ("loss", "train_acc_given", "clean_acc", "noisy_memorised", "noisy_true",
                    "grad_norm_clean", "grad_norm_noisy"):
            if rec.get(key) is not None:  # TensorBoard, when a writer is open
                self.write_scalar("diagnostics/" + key, rec[key], rec["epoch"])
        self.epoch_records = [r for r in self.epoch_records if r["epoch"] < rec["epoch"]] + [rec]
        write_json_atomic(osp.join(self.output_dir, DIAG_FILE), self.epoch_records)
        super().after_epoch()

    # ------------------------------------------------------------------ life cycle
    def before_train(self):
        print("Loss: {}{}".format(self.cfg.TRAINER.PTNL.LOSS, " (q={})".format(self.cfg.TRAINER.PTNL.GCE_Q)
                                   if self.cfg.TRAINER.PTNL.LOSS == "gce" else ""))
        if self.noise_record is not None:
            write_json_atomic(osp.join(self.output_dir, NOISE_FILE), self.noise_record)
            print("Label noise: {} {} rate {} -> {} noisy of {} (realised {:.4f})".format(
                self.noise_record["type"], self.noise_record["mode"], self.noise_record["rate"],
                self.noise_record["num_noisy"], self.noise_record["num_samples"],
                self.noise_record["realised_rate"]))
        super().before_train()
        path = osp.join(self.output_dir, DIAG_FILE)
        records = json.load(open(path)) if self.start_epoch > 0 and osp.isfile(path) else []
        self.epoch_records = [r for r in records if r["epoch"] <= self.start_epoch]

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        super().save_model(epoch, directory, is_best=is_best, val_result=val_result, model_name=model_name)
        keep = self.cfg.TRAINER.PTNL.KEEP_CHECKPOINTS
        if model_name or keep <= 0:
            return
        for name in self.get_model_names():  # older periodic checkpoints: keep the newest `keep`
            folder = osp.join(directory, name)
            found = sorted((int(m.group(1)), f) for f in os.listdir(folder)
                           if (m := re.fullmatch(r"model\.pth\.tar-(\d+)", f)))
            for _, f in found[:-keep]:
                os.remove(osp.join(folder, f))

    def split_items(self, split):
        """(split name, items) as Dassl's ``test`` picks them: val if asked and present, else test."""
        if split == "val" and self.dm.dataset.val:
            return "val", self.dm.dataset.val
        return "test", self.dm.dataset.test

    def cached_features(self, split, items):
        """Image-encoder features of ``items`` under the test transform, from the feature cache."""
        encode = lambda x: self.model.image_encoder(x.type(self.model.dtype))  # noqa: E731
        return cached_image_features(
            encode, self.clip_weights_path, self.cfg.DATASET.NAME, split, [d.impath for d in items],
            self.dm.test_loader.dataset.transform, self.device, self.cfg.DATALOADER.TEST.BATCH_SIZE,
            self.cfg.DATALOADER.NUM_WORKERS, use_cache=self.cfg.TRAINER.PTNL.CACHE_FEATURES)

    def test_from_features(self, split=None):
        """Dassl's ``test`` for models over a frozen CLIP image encoder: the images of the split
        are encoded once (cached across runs) and each evaluation is a matrix product with the
        current class weights. Same result lines and return value."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        split, items = self.split_items(split if split is not None else self.cfg.TEST.SPLIT)
        print(f"Evaluate on the *{split}* set")
        feats = self.cached_features(split, items).to(self.device)
        labels = torch.tensor([d.label for d in items], device=self.device)
        step = self.cfg.DATALOADER.TEST.BATCH_SIZE
        classify = self.model.classifier()
        for i in range(0, len(items), step):
            output = classify(feats[i:i + step])
            if self._captured is not None:
                self._captured.append(output.detach().float().cpu())
            self.evaluator.process(output, labels[i:i + step])
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    @torch.no_grad()
    def test(self, split=None):
        self._captured = []
        try:
            if self.cfg.TRAINER.PTNL.CACHE_FEATURES and hasattr(self.model, "classifier"):
                result = self.test_from_features(split)
            else:
                result = super().test(split)
            logits = torch.cat(self._captured) if self._captured else None
        finally:
            self._captured = None
        ev = self.evaluator
        y_true, y_pred = np.asarray(ev._y_true), np.asarray(ev._y_pred)
        per_class = {}
        for c in np.unique(y_true):
            mask = y_true == c
            per_class[str(int(c))] = 100.0 * float((y_pred[mask] == c).mean())
        from sklearn.metrics import f1_score
        if self.cfg.TRAINER.PTNL.ANALYSIS:
            from sklearn.metrics import confusion_matrix
            cm = confusion_matrix(y_true, y_pred, labels=list(range(self.num_classes)))
            write_json_atomic(osp.join(self.output_dir, "confusion_matrix.json"),
                              {"classnames": list(self.dm.dataset.classnames), "rows_true_cols_pred": cm.tolist()})
        if (self.SAVE_TEST_LOGITS or self.cfg.TRAINER.PTNL.SAVE_TEST_LOGITS) and len(y_true) == len(
                self.dm.dataset.test) and split in (None, "test"):
            path = osp.join(self.output_dir, LOGITS_FILE)
            state = {"logits": logits.float().cpu(), "labels": torch.as_tensor(y_true),
                     "impaths": [d.impath for d in self.dm.dataset.test]}
            atomic_write(path, lambda f: torch.save(state, f), mode="wb")
        self.last_test = {
            "accuracy": float(result),
            "macro_f1": 100.0 * float(f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true))),
            "per_class_accuracy": per_class, "num_test": int(len(y_true)),
        }
        return result

    def model_inference(self, input):
        output = super().model_inference(input)
        if getattr(self, "_captured", None) is not None:
            self._captured.append(output.detach().float().cpu())
        return output

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
        super().after_train()
        if self.last_test is not None:
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
        cfg = self.cfg
        nr = self.noise_record
        noise = {"type": cfg.DATASET.NOISE.TYPE, "mode": cfg.DATASET.NOISE.MODE,
                 "rate": cfg.DATASET.NOISE.RATE,
                 "realised_rate": nr["realised_rate"] if nr else 0.0,
                 "num_noisy": nr["num_noisy"] if nr else 0,
                 "generator": nr["generator"] if nr else None}
        record = dict(self.last_test)
        record.update({
            "trainer": cfg.TRAINER.NAME, "dataset": cfg.DATASET.NAME,
            "backbone": cfg.MODEL.BACKBONE.NAME, "seed": cfg.SEED,
            "num_shots": cfg.DATASET.NUM_SHOTS, "noise": noise, "loss": cfg.TRAINER.PTNL.LOSS,
            "prompt": self.prompt_settings(),
            "gce_q": cfg.TRAINER.PTNL.GCE_Q if cfg.TRAINER.PTNL.LOSS == "gce" else None,
            "classnames": list(self.dm.dataset.classnames),
            "epochs": self.epoch_records,
            "engine": {"name": compat.ENGINE, "version": compat.ENGINE_VERSION},
            "precision": self.precision,
            "config_digest": config_digest(cfg),
            "wall_time_s": time.time() - self._wall_start,
        })
        return record
