"""NLPrompt (docs/methods.md): per epoch an optimal-transport plan between images and classes gives
pseudo-labels; items whose pseudo-label is their given label train with CE, the others with MAE
(the algorithm: ``ptnl.selection.nlprompt``)."""
import warnings

import numpy as np

from ptnl.data.randomness import set_loader_epoch
from ptnl.errors import ConfigError
from ptnl.losses import build_loss
from ptnl.selection import nlprompt
from ptnl.trainers.registry import register_trainer
from ptnl.trainers.selection.base import SampleSelectionTrainer


@register_trainer
class NLPrompt(SampleSelectionTrainer):
    """NLPrompt: each epoch an optimal-transport plan between the images and the classes (POT's
    Sinkhorn, uniform marginals) gives pseudo-labels; items whose pseudo-label is their given label
    form X, trained with CE, then the others (U) with MAE on their given labels."""

    COLOUR = "#009E73"
    LINE_STYLE = ("P", "-.")  # a marker no loss has
    USES_LOSS = False  # CE on the clean part, MAE on the rest
    CFG_NODE = "NLPROMPT"
    RELEASE_PASS_TRANSFORM = "train"  # the release's OT pass runs over its training loader (augmented views)

    @classmethod
    def check_cfg(cls, cfg):
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
