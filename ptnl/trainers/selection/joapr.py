"""JoAPR (docs/methods.md): warm-up, then per epoch a two-threshold GMM on the per-sample loss
splits the training set into a clean part with refined labels and a noisy part with sharpened
predictions, trained together with mixup (the algorithm: ``ptnl.selection.joapr``)."""
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ptnl.data.randomness import set_loader_epoch
from ptnl.errors import RunError
from ptnl.selection import joapr
from ptnl.trainers.registry import register_trainer
from ptnl.trainers.selection.base import SampleSelectionTrainer


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

    COLOUR = "#D55E00"
    LINE_STYLE = ("X", "-.")  # a marker no loss has
    USES_LOSS = False  # CE with mixup and its penalties, whatever LOSS says
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
