"""How well a partition found the noisy samples: precision and recall of the predicted noisy set
against the true one (the samples whose given label is not their true label), over every sample or,
where only some labels are verified (Food-101N), over the verified ones."""
from typing import Dict, Optional

import numpy as np


def partition_scores(predicted_noisy: np.ndarray, truly_noisy: np.ndarray,
                     known: Optional[np.ndarray] = None) -> Dict[str, Optional[float]]:
    """Precision (share of the predicted noisy set that is noisy) and recall (share of the noisy
    samples found), in percent, with the counts; a ratio over an empty set is None, not 0.

    Args:
        predicted_noisy: bool [N], the method's noisy set (U).
        truly_noisy: bool [N], given label != true label (read only where ``known``).
        known: bool [N], the samples whose noise is known (verified labels); None: all. Precision
            and recall, ``num_found`` and ``num_truly_noisy`` count these samples only
            (``num_scored`` of them; ``scored_on`` says "verified").
    """
    pred = np.asarray(predicted_noisy, dtype=bool)
    true = np.asarray(truly_noisy, dtype=bool)
    if pred.shape != true.shape:
        raise ValueError("partition_scores: {} predicted flags for {} samples".format(pred.shape, true.shape))
    mask = np.ones_like(pred) if known is None else np.asarray(known, dtype=bool)
    if mask.shape != pred.shape:
        raise ValueError("partition_scores: {} known flags for {} samples".format(mask.shape, pred.shape))
    hits = int((pred & true & mask).sum())
    n_pred, n_true = int((pred & mask).sum()), int((true & mask).sum())
    out = {"num_samples": int(pred.size), "num_clean": int(pred.size - pred.sum()), "num_noisy": int(pred.sum()),
           "num_truly_noisy": n_true, "num_found": hits,
           "precision": 100.0 * hits / n_pred if n_pred else None,
           "recall": 100.0 * hits / n_true if n_true else None}
    if known is not None:
        out.update({"num_scored": int(mask.sum()), "scored_on": "verified"})
    return out
