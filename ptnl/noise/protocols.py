"""Label-noise protocols as pure functions over label arrays (DESIGN "Label noise").

Given the few-shot set S (labels ``y``) and a rate r:
- ``swap`` (PTNL / JoAPR): class c keeps exactly n_c items labelled c, of which
  ``noisy_count(r, n_c)`` are replaced by images of other classes taken from a pool (the training
  split outside S, no image used twice); the class they come from follows the noise type.
- ``flip`` (NLPrompt): ``noisy_count(r, |S|)`` items of S, drawn uniformly, get a wrong label.
Noise types (``ptnl.noise.types``, a registry) give the wrong label of an image of true class y:
- ``sym``: uniform over the other classes; ``pair``: (y + 1) mod C; ``confusion``: the wrong class
  that zero-shot CLIP scores highest for that image (scores passed in by the caller).

Every draw comes from a generator seeded by (seed, key, mode, type) alone, so results do not
depend on what else consumed the global RNGs. All draws are made in a fixed order for every
slot whatever the rate, and a rate only decides how long a prefix is used, so the noisy items at
a lower rate are a subset of those at a higher rate (with the same replacement images and
labels).
"""
import zlib

import numpy as np

from ptnl.noise.types import NOISE_TYPES, NoiseError, SwapState, noise_type as _noise_type

NOISE_MODES = ("swap", "flip")
COUNT_RULE = "floor(rate * n + 0.5) noisy items out of n (n = shots of the class for swap, |S| for flip)"


def noisy_count(rate, n):
    """How many of ``n`` items are noisy at ``rate``: rate*n rounded half up (monotone in rate)."""
    return int(np.floor(rate * n + 0.5))


def check_protocol(rate, noise_type, mode):
    if not (0.0 <= rate < 1.0):
        raise NoiseError("Noise rate must be in [0, 1) (DATASET.NOISE.RATE), got {}".format(rate))
    NOISE_TYPES.lookup(noise_type)
    if mode not in NOISE_MODES:
        raise NoiseError("Unknown noise mode {!r} (DATASET.NOISE.MODE): expected one of {}".format(
            mode, ", ".join(NOISE_MODES)))


def noise_rng(seed, key, mode, noise_type):
    """The generator of one protocol: a function of its identity only."""
    tag = zlib.crc32("{}|{}|{}".format(key, mode, noise_type).encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([max(int(seed), 0), tag]))


def flip_noise(labels, rate, num_classes, seed, noise_type="sym", key="", scores=None):
    """NLPrompt's protocol. Returns ``given`` (labels to train on) and ``noisy`` (bool mask).
    ``confusion`` needs ``scores`` [len(labels), C] (zero-shot scores of the items)."""
    check_protocol(rate, noise_type, "flip")
    nt = _noise_type(noise_type)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if num_classes < 2:
        raise NoiseError("Label noise needs at least 2 classes, got {}".format(num_classes))
    rng = noise_rng(seed, key, "flip", noise_type)
    order = rng.permutation(n)  # rank -> item
    offsets = rng.integers(1, num_classes, size=n)  # sym: a uniform other class, per rank
    if nt.needs_scores:
        _check_scores(noise_type, scores, n, "few-shot item")
    chosen = order[:noisy_count(rate, n)]
    given = labels.copy()
    noisy = np.zeros(n, dtype=bool)
    if len(chosen):
        given[chosen] = nt.flip_labels(labels[chosen], offsets[:len(chosen)], num_classes,
                                       None if scores is None else np.asarray(scores)[chosen])
    noisy[chosen] = True
    return {"given": given, "noisy": noisy}


def _check_scores(noise_type, scores, n, what):
    if scores is None or len(scores) != n:
        raise NoiseError("{} noise needs zero-shot scores for every {}".format(noise_type.capitalize(), what))


def swap_noise(labels, pool_labels, rate, num_classes, seed, noise_type="sym", key="", pool_scores=None):
    """PTNL's protocol. Returns ``source`` (per item of S: -1 to keep it, else the index of the
    pool image that replaces it), ``true`` (true label of each resulting item), ``noisy`` and
    ``fallback`` (confusion only: replacements that are not any image's top wrong class, taken
    when none is left; they are the images scoring highest for the slot's class). The given
    labels are ``labels`` unchanged. Raises ``NoiseError`` when the pool cannot supply the
    requested replacements.

    The class of a slot's replacement follows the type: ``sym`` a uniformly drawn other class with
    images left; ``pair`` class c - 1 (an image of class y is labelled y + 1); ``confusion`` an
    image whose top wrong class under ``pool_scores`` [len(pool), C] is c.
    """
    check_protocol(rate, noise_type, "swap")
    nt = _noise_type(noise_type)
    labels = np.asarray(labels, dtype=np.int64)
    pool_labels = np.asarray(pool_labels, dtype=np.int64)
    rng = noise_rng(seed, key, "swap", noise_type)
    classes = sorted(set(labels.tolist()))
    slots = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}  # rank -> item
    wanted = {c: noisy_count(rate, len(slots[c])) for c in classes}
    used = np.zeros(len(pool_labels), dtype=bool)
    if nt.needs_scores:
        _check_scores(noise_type, pool_scores, len(pool_labels), "pool image")
        pool_scores = np.asarray(pool_scores, dtype=np.float64)
    state = SwapState(rng, nt.swap_queues(rng, pool_labels, classes, num_classes, pool_scores), used,
                      pool_labels, num_classes, pool_scores)
    source = np.full(len(labels), -1, dtype=np.int64)
    true = labels.copy()
    fallback = np.zeros(len(labels), dtype=bool)
    short = {}
    # Assign every slot in (rank, class) order whatever the rate, so lower rates are prefixes.
    for rank in range(max((len(s) for s in slots.values()), default=0)):
        for c in classes:
            if rank >= len(slots[c]):
                continue
            j, is_fallback = nt.swap_take(c, state)
            if j is not None:
                used[j] = True  # at ranks beyond this rate's, reserved for the higher rates
            if rank >= wanted[c]:
                continue
            if j is None:
                short[c] = short.get(c, 0) + 1
                continue
            item = slots[c][rank]
            source[item] = j
            true[item] = pool_labels[j]
            fallback[item] = is_fallback
    if short:
        detail = ", ".join("class {} needs {} and got {}".format(c, wanted[c], wanted[c] - k)
                           for c, k in sorted(short.items())[:8])
        raise NoiseError(
            "Swap noise ({}) at rate {} needs {} replacement images in all, but the training split "
            "outside the few-shot set ({} images) cannot supply them: {}{}. Lower DATASET.NOISE.RATE "
            "or DATASET.NUM_SHOTS, or use DATASET.NOISE.MODE flip.".format(
                noise_type, rate, sum(wanted.values()), len(pool_labels), detail,
                "" if len(short) <= 8 else " (and {} more classes)".format(len(short) - 8)))
    return {"source": source, "true": true, "noisy": source >= 0, "fallback": fallback}


def transition_matrix(true, given, num_classes):
    """Counts of (true label, given label) pairs, as a C x C list of lists."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(true, dtype=np.int64), np.asarray(given, dtype=np.int64)), 1)
    return m.tolist()
