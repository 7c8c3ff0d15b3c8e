"""How well a partition found the noisy samples: precision and recall of the predicted noisy set
against the true one (the samples whose given label is not their true label)."""
from typing import Dict, Optional

import numpy as np


def partition_scores(predicted_noisy: np.ndarray, truly_noisy: np.ndarray) -> Dict[str, Optional[float]]:
    """Precision (share of the predicted noisy set that is noisy) and recall (share of the noisy
    samples found), in percent, with the counts; a ratio over an empty set is None, not 0.

    Args:
        predicted_noisy: bool [N], the method's noisy set (U).
        truly_noisy: bool [N], given label != true label.
    """
    pred = np.asarray(predicted_noisy, dtype=bool)
    true = np.asarray(truly_noisy, dtype=bool)
    if pred.shape != true.shape:
        raise ValueError("partition_scores: {} predicted flags for {} samples".format(pred.shape, true.shape))
    hits = int((pred & true).sum())
    n_pred, n_true = int(pred.sum()), int(true.sum())
    return {"num_samples": int(pred.size), "num_clean": int(pred.size - n_pred), "num_noisy": n_pred,
            "num_truly_noisy": n_true, "num_found": hits,
            "precision": 100.0 * hits / n_pred if n_pred else None,
            "recall": 100.0 * hits / n_true if n_true else None}
