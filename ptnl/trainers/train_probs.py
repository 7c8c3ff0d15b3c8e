"""TRAINER.PTNL.SAVE_TRAIN_PROBS: the final model's class probabilities of every training item, in
the layout cleanlab's ``find_label_issues(labels, pred_probs)`` reads (docs/export.md)."""
import os.path as osp

import numpy as np
import torch

from ptnl.clip.features import image_features
from ptnl.io import atomic_write, get_logger

log = get_logger(__name__)

TRAIN_PROBS_FILE = "train_probs.npy"  # [N, C] float32 softmax of the final model, training order
TRAIN_LABELS_FILE = "train_labels.npy"  # [N] int64: the given labels trained on, same order


@torch.no_grad()
def train_probabilities(trainer) -> np.ndarray:
    """[N, C] softmax probabilities of the trainer's final model for its training items (training
    order, noise.json's), each image under the test transform (no augmentation)."""
    trainer.set_model_mode("eval")
    probs = image_features(lambda x: torch.softmax(trainer.model_inference(x).float(), dim=-1),
                           [d.impath for d in trainer.train_items], trainer.dm.test_loader.dataset.transform,
                           trainer.device, trainer.cfg.DATALOADER.TEST.BATCH_SIZE, desc="training set probabilities",
                           normalized=False)
    return probs.numpy().astype(np.float32)


def save_train_probs(trainer) -> str:
    """Write ``train_probs.npy`` and ``train_labels.npy`` (plain .npy, no pickle) into the run folder."""
    probs = train_probabilities(trainer)
    labels = np.asarray([d.label for d in trainer.train_items], dtype=np.int64)
    path = osp.join(trainer.output_dir, TRAIN_PROBS_FILE)
    atomic_write(path, lambda f: np.save(f, probs, allow_pickle=False), mode="wb")
    atomic_write(osp.join(trainer.output_dir, TRAIN_LABELS_FILE),
                 lambda f: np.save(f, labels, allow_pickle=False), mode="wb")
    log.info("Saved {} ({} training items x {} classes) and {}".format(path, *probs.shape, TRAIN_LABELS_FILE))
    return path
