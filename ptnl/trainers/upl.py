"""UPL: prompt tuning on zero-shot pseudo-labels, no labels used (Huang et al. 2022; the paper's
Sec. 5 variant with ``random`` selection and GCE)."""
import numpy as np
import torch

from ptnl import compat
from ptnl.clip.features import zeroshot_logits
from ptnl.clip.preprocess import test_transform
from ptnl.clip.templates import template_set
from ptnl.clip.weights import load_clip
from ptnl.data.base import PTNLDatasetBase
from ptnl.errors import ConfigError
from ptnl.io import get_logger
from ptnl.noise import TrainingSet
from ptnl.pseudo import pseudo_label_report, pseudo_labels, select_per_class
from ptnl.trainers.prompt_tuning import PTNL
from ptnl.trainers.registry import register_trainer

log = get_logger(__name__)


@register_trainer
class UPL(PTNL):
    """Pseudo-labels the whole training split with zero-shot CLIP (one or several backbones,
    probabilities averaged; the dataset's template or an ensemble), keeps K per pseudo-class
    (``topk`` most confident or ``random``), and prompt-tunes on them. Ground-truth labels are
    only read afterwards, to report pseudo-label quality."""

    COLOUR = "#0072B2"  # prompt tuning as PTNL, on pseudo-labels
    SAVE_TEST_LOGITS = True
    GROUPABLE = False  # trains on its own pseudo-labelled set

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        if cfg.DATASET.NOISE.RATE > 0:
            raise ConfigError("UPL trains on pseudo-labels; DATASET.NOISE.RATE must be 0, got {}".format(
                cfg.DATASET.NOISE.RATE))

    def training_set(self, dataset):
        """K pseudo-labelled images per pseudo-class from the whole training split."""
        cfg = self.cfg
        opts = cfg.TRAINER.UPL
        k = upl_k(cfg)
        pool = dataset.full_train if isinstance(dataset, PTNLDatasetBase) else None
        if pool is None:
            if cfg.DATASET.NUM_SHOTS > 0:
                raise ConfigError("UPL needs the whole training split, but dataset {} only exposes its few-shot "
                                 "sample; set DATASET.NUM_SHOTS -1 and TRAINER.UPL.NUM_PER_CLASS K".format(
                                     cfg.DATASET.NAME))
            pool = list(dataset.train_x)
        probs = self.zero_shot_probs([d.impath for d in pool])
        pseudo, conf = pseudo_labels(probs)
        chosen = select_per_class(pseudo, conf, k, opts.SELECTION, cfg.SEED)
        names = dataset.classnames
        train = [compat.Datum(impath=pool[i].impath, label=int(pseudo[i]), classname=names[pseudo[i]])
                 for i in chosen]
        log.info(selection_message(len(train), k, opts.SELECTION, np.bincount(np.asarray(pseudo, dtype=np.int64),
                                                                              minlength=len(names)), names))
        # ground truth, for diagnostics and the record only
        true = np.array([d.label for d in pool])
        self.upl_record = pseudo_label_report(true, pseudo, chosen, len(names), k)
        self.upl_record.update(selection=opts.SELECTION, num_per_class=k, templates=opts.TEMPLATES,
                               backbones=self.pseudo_backbones())
        log.info("UPL: pseudo-label accuracy {:.1f}% on the training split, {:.1f}% on the selection".format(
            self.upl_record["pseudo_label_accuracy"], self.upl_record["selection_accuracy"]))
        return TrainingSet(train, [int(true[i]) for i in chosen], None)

    def pseudo_backbones(self):
        return list(self.cfg.TRAINER.UPL.BACKBONES) or [self.cfg.MODEL.BACKBONE.NAME]

    def zero_shot_probs(self, paths):
        """Mean over the pseudo-labelling backbones of the zero-shot class probabilities."""
        cfg = self.cfg
        templates = template_set(cfg.DATASET.NAME, cfg.TRAINER.UPL.TEMPLATES)
        classnames = self.dm.dataset.classnames
        total = None
        for name in self.pseudo_backbones():
            model = load_clip(name, device=self.device, prec="fp16" if self.device.type == "cuda" else "fp32")
            res = model.visual.input_resolution
            tfm = test_transform(cfg, backbone=name, size=res)
            logits = zeroshot_logits(model, paths, classnames, templates, tfm, cfg.DATASET.NAME,
                                     batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
                                     num_workers=cfg.DATALOADER.NUM_WORKERS,
                                     verify=cfg.TRAINER.PTNL.CACHE_VERIFY)
            probs = torch.softmax(logits.float(), dim=1).numpy()
            total = probs if total is None else total + probs
            del model
        return total / len(self.pseudo_backbones())

    def results_record(self):
        record = super().results_record()
        record["upl"] = self.upl_record
        return record


UPL_DEFAULT_K = 16  # pseudo-labelled images per class in UPL's release


def upl_k(cfg) -> int:
    """K pseudo-labelled images per class: TRAINER.UPL.NUM_PER_CLASS, else DATASET.NUM_SHOTS, else
    UPL's 16 (a run without either trains as UPL's release does)."""
    for k in (cfg.TRAINER.UPL.NUM_PER_CLASS, cfg.DATASET.NUM_SHOTS):
        if k > 0:
            return k
    return UPL_DEFAULT_K


def selection_message(selected, k, selection, candidates, names):
    """"UPL: N pseudo-labelled images selected (K per class, SELECTION)", and when N < classes x K,
    why: the classes that had fewer than K candidates (images pseudo-labelled as them), with counts."""
    text = "UPL: {} pseudo-labelled images selected ({} per class, {})".format(selected, k, selection)
    short = [(names[c], int(n)) for c, n in enumerate(candidates) if n < k]
    if short:
        text += "; not {} x {} = {}: {} class(es) had fewer than {} candidates: {}".format(
            len(names), k, len(names) * k, len(short), k, ", ".join("{} ({})".format(c, n) for c, n in short))
    return text
