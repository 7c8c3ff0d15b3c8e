"""Evaluation of the trainers: from cached image features when the model is a head over a frozen
CLIP image encoder (the test split is encoded once, across runs), else Dassl's ``test``; either
way the per-class accuracy, macro-F1, optional confusion matrix and saved test logits."""
import os.path as osp

import numpy as np
import torch

from ptnl.clip.features import cached_image_features
from ptnl.compat import macro_f1
from ptnl.io import atomic_write, get_logger, write_json_atomic
from ptnl.runs.files import CONFUSION_FILE, LOGITS_FILE

log = get_logger(__name__)


class FeatureEvaluation:
    """The evaluation half of ``PTNLTrainerBase`` (a mixin over the engine's ``TrainerX``)."""

    def split_items(self, split):
        """(split name, items) as Dassl's ``test`` picks them: val if asked and present, else test."""
        if split == "val" and self.dm.dataset.val:
            return "val", self.dm.dataset.val
        return "test", self.dm.dataset.test

    raw_features = False  # True: features as the image encoder gives them (LinearProbe's coop protocol)

    def cached_features(self, split, items):
        """Image-encoder features of ``items`` under the test transform, from the feature cache;
        L2-normalised unless ``raw_features``."""
        encode = lambda x: self.model.image_encoder(x.type(self.model.dtype))  # noqa: E731
        return cached_image_features(
            encode, self.clip_weights_path, self.cfg.DATASET.NAME, split, [d.impath for d in items],
            self.dm.test_loader.dataset.transform, self.device, self.cfg.DATALOADER.TEST.BATCH_SIZE,
            self.cfg.DATALOADER.NUM_WORKERS, use_cache=self.cfg.TRAINER.PTNL.CACHE_FEATURES, dtype=self.model.dtype,
            raw=self.raw_features, verify=self.cfg.TRAINER.PTNL.CACHE_VERIFY)

    def test_from_features(self, split=None):
        """Dassl's ``test`` for models over a frozen CLIP image encoder: the images of the split
        are encoded once (cached across runs) and each evaluation is a matrix product with the
        current class weights. Same result lines and return value."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        split, items = self.split_items(split if split is not None else self.cfg.TEST.SPLIT)
        log.info(f"Evaluate on the *{split}* set")
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
        if self.cfg.TRAINER.PTNL.ANALYSIS:
            from sklearn.metrics import confusion_matrix
            cm = confusion_matrix(y_true, y_pred, labels=list(range(self.num_classes)))
            write_json_atomic(osp.join(self.output_dir, CONFUSION_FILE),
                              {"classnames": list(self.dm.dataset.classnames), "rows_true_cols_pred": cm.tolist()})
        if (self.SAVE_TEST_LOGITS or self.cfg.TRAINER.PTNL.SAVE_TEST_LOGITS) and len(y_true) == len(
                self.dm.dataset.test) and split in (None, "test"):
            path = osp.join(self.output_dir, LOGITS_FILE)
            state = {"logits": logits.float().cpu(), "labels": torch.as_tensor(y_true),
                     "impaths": [d.impath for d in self.dm.dataset.test]}
            atomic_write(path, lambda f: torch.save(state, f), mode="wb")
        self.last_test = {
            "accuracy": float(result),
            "macro_f1": macro_f1(y_true, y_pred),
            "per_class_accuracy": per_class, "num_test": int(len(y_true)),
        }
        return result

    def model_inference(self, input):
        output = super().model_inference(input)
        if getattr(self, "_captured", None) is not None:
            self._captured.append(output.detach().float().cpu())
        return output
