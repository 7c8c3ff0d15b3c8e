"""Zero-shot pseudo-labels and per-class selection (UPL, and the paper's robust variant)."""
import numpy as np

from ptnl.errors import ConfigError


def pseudo_labels(probs):
    """(label, confidence) per row of class probabilities [N, C]: the argmax and its probability."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = probs.argmax(axis=1)
    return labels, probs[np.arange(len(labels)), labels]


def select_per_class(labels, confidence, k, mode="topk", seed=0):
    """Indices of at most ``k`` items per pseudo-class, sorted by class then pick order.

    ``topk``: the k most confident (UPL); ``random``: k uniformly at random, from a generator
    seeded by ``seed`` only (the paper's diverse selection). Classes with fewer items give all.
    """
    labels = np.asarray(labels)
    confidence = np.asarray(confidence)
    rng = np.random.default_rng(np.random.SeedSequence([max(int(seed), 0), 0x5E1EC7]))
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if mode == "topk":
            order = members[np.argsort(-confidence[members], kind="stable")]
        elif mode == "random":
            order = rng.permutation(members)
        else:
            raise ConfigError("Selection must be 'topk' or 'random' (TRAINER.UPL.SELECTION), got {!r}".format(mode))
        chosen.extend(order[:k].tolist())
    return np.array(chosen, dtype=np.int64)


def pseudo_label_report(true, pseudo, selected, num_classes, k):
    """Pseudo-label quality against ground truth (for the record only; never used to train)."""
    true, pseudo, selected = np.asarray(true), np.asarray(pseudo), np.asarray(selected, dtype=np.int64)
    counts = np.bincount(pseudo[selected], minlength=num_classes)
    acc_sel = float((true[selected] == pseudo[selected]).mean()) if len(selected) else None
    return {
        "pseudo_label_accuracy": 100.0 * float((true == pseudo).mean()),
        "selection_accuracy": None if acc_sel is None else 100.0 * acc_sel,
        "selection_noise_rate": None if acc_sel is None else 1.0 - acc_sel,
        "selection_size": int(len(selected)),
        "per_class_selected": counts.tolist(),
        "classes_below_k": [int(c) for c in np.flatnonzero((counts > 0) & (counts < k))],
        "classes_without_pseudo_labels": [int(c) for c in np.flatnonzero(counts == 0)],
    }
