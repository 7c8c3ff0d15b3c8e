"""Per-epoch training diagnostics of every trainer: loss, accuracy against the given labels, and
on the noisy samples how often the model predicts the given (wrong) label vs the true one; with
TRAINER.PTNL.ANALYSIS the mean per-sample gradient norm of clean and of noisy samples."""
from typing import Callable, Dict, List

import numpy as np
import torch

SCALARS = ("loss", "train_acc_given", "clean_acc", "noisy_memorised", "noisy_true",
           "grad_norm_clean", "grad_norm_noisy")


class EpochDiagnostics:
    """Counts of one epoch, fed batch by batch (numpy arrays of predictions and labels)."""

    def __init__(self, lr: float):
        self.lr = lr
        self.d = {"n": 0, "loss_sum": 0.0, "correct_given": 0, "clean": 0, "clean_correct": 0,
                  "noisy": 0, "noisy_given": 0, "noisy_true": 0}

    def track(self, pred: np.ndarray, given: np.ndarray, true: np.ndarray, loss: float) -> None:
        noisy = true != given
        d = self.d
        d["n"] += len(pred)
        d["loss_sum"] += loss * len(pred)
        d["correct_given"] += int((pred == given).sum())
        d["clean"] += int((~noisy).sum())
        d["clean_correct"] += int((pred == given)[~noisy].sum())
        d["noisy"] += int(noisy.sum())
        d["noisy_given"] += int((pred == given)[noisy].sum())
        d["noisy_true"] += int((pred == true)[noisy].sum())

    def track_gradients(self, norms: np.ndarray, noisy: np.ndarray) -> None:
        d = self.d
        d["grad_clean_sum"] = d.get("grad_clean_sum", 0.0) + float(norms[~noisy].sum())
        d["grad_noisy_sum"] = d.get("grad_noisy_sum", 0.0) + float(norms[noisy].sum())

    def record(self, epoch: int) -> Dict:
        """This epoch's record (``epochs.json`` and ``results.json``'s ``epochs``); ``epoch`` from 1."""
        d = self.d

        def pct(a, b):
            return 100.0 * a / b if b else None
        return {"epoch": epoch, "lr": self.lr, "loss": d["loss_sum"] / max(d["n"], 1),
                "train_acc_given": pct(d["correct_given"], d["n"]),
                "clean_acc": pct(d["clean_correct"], d["clean"]),
                "noisy_memorised": pct(d["noisy_given"], d["noisy"]),
                "noisy_true": pct(d["noisy_true"], d["noisy"]),
                "num_clean": d["clean"], "num_noisy": d["noisy"],
                **({"grad_norm_clean": d["grad_clean_sum"] / d["clean"] if d["clean"] else None,
                    "grad_norm_noisy": d["grad_noisy_sum"] / d["noisy"] if d["noisy"] else None}
                   if "grad_clean_sum" in d else {})}


def epoch_line(rec: Dict) -> str:
    """The ``* epoch N: ...`` log line of an epoch record."""
    fmt = lambda v: "n/a" if v is None else "{:.1f}%".format(v)  # noqa: E731
    line = ("* epoch {}: loss {:.4f} lr {:.4e} train acc {} clean acc {} noisy->given {} "
            "noisy->true {}".format(rec["epoch"], rec["loss"], rec["lr"], fmt(rec["train_acc_given"]),
                                    fmt(rec["clean_acc"]), fmt(rec["noisy_memorised"]),
                                    fmt(rec["noisy_true"])))
    if "grad_norm_clean" in rec:
        g = lambda v: "n/a" if v is None else "{:.4e}".format(v)  # noqa: E731
        line += " grad norm clean {} noisy {}".format(g(rec["grad_norm_clean"]), g(rec["grad_norm_noisy"]))
    return line


def per_sample_grad_norms(loss_fn: Callable, output: torch.Tensor, label: torch.Tensor,
                          params: List[torch.Tensor]) -> np.ndarray:
    """||d loss(x_i, y_i) / d theta|| for each sample of the batch, from the batch's forward graph
    (kept for the regular backward)."""
    norms = []
    for i in range(len(label)):
        grads = torch.autograd.grad(loss_fn(output[i:i + 1], label[i:i + 1]), params,
                                    retain_graph=True, allow_unused=True)
        norms.append(float(sum((g.float() ** 2).sum() for g in grads if g is not None)) ** 0.5)
    return np.array(norms)

