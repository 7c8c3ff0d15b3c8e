"""Label-noise protocols as pure functions over label arrays (docs/noise.md).

Given the few-shot set S (labels ``y``) and a rate r:
- ``swap`` (PTNL / JoAPR): class c keeps exactly n_c items labelled c, of which
  ``noisy_count(r, n_c)`` are replaced by images of other classes taken from a pool (the training
  split outside S, no image used twice); the class they come from follows the noise type.
- ``flip`` (NLPrompt): ``noisy_count(r, |S|)`` items of S, drawn uniformly, get a wrong label.
- ``release``: the paper's released sampler (``release_noise``), which draws its own few-shot set
  from the training split's first halves and wrong images from the second halves, with the
  release's generators (it is exempt from the generator and nesting rules below).
Noise types (``ptnl.noise.types``, a registry) give the wrong label of an image of true class y:
- ``sym``: uniform over the other classes; ``pair``: each protocol's own direction, (y - 1) mod C
  under swap (JoAPR's pairflip) and (y + 1) mod C under flip (NLPrompt's asym); ``pair_next`` /
  ``pair_prev``: (y + 1) / (y - 1) under both; ``confusion``: the wrong class that zero-shot CLIP
  scores highest for that image (scores passed in by the caller).

Every draw comes from a generator seeded by (seed, key, mode, type) alone, so results do not
depend on what else consumed the global RNGs. All draws are made in a fixed order for every
slot whatever the rate, and a rate only decides how long a prefix is used, so the noisy items at
a lower rate are a subset of those at a higher rate (with the same replacement images and
labels).
"""
import math
import random
import zlib

import numpy as np

from ptnl.noise.types import NOISE_TYPES, NoiseError, SwapState, noise_type as _noise_type

NOISE_MODES = ("swap", "flip", "release")
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
    if mode == "release" and _noise_type(noise_type).release is None:
        raise NoiseError("DATASET.NOISE.MODE release supports DATASET.NOISE.TYPE sym and the pair types "
                         "(pair, pair_next, pair_prev), not {!r}; use DATASET.NOISE.MODE swap for it".format(
                             noise_type))


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
    images left; the pair types class c - shift (``pair``: c + 1, so an image of class y is labelled
    y - 1; ``pair_next``: c - 1); ``confusion`` an image whose top wrong class under ``pool_scores``
    [len(pool), C] is c.
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


RELEASE_RULES = {
    "halves": "each class's training images, in split order, are cut at ceil(n/2): the first half "
              "holds the clean candidates, the second half the wrong-image pool",
    "clean": "one numpy.random.default_rng(seed) for all classes, in ascending class order: "
             "rng.choice(len(first half), size=K, replace=len(first half) < K); the first num_fp "
             "picks are then replaced by the wrong images",
    "wrong": "one random.Random(seed) for all classes, in ascending class order (the release uses "
             "Python's global random after seeding it with the run's seed); sym: candidates are "
             "list(set of all second halves minus this class's halves minus images already used), in "
             "CPython's set order as the release lists them; pair: class c's candidates are the unused "
             "second-half images of class c - shift, in split order",
    "count": "num_fp = floor(rate * K + 0.5) wrong images per class (the release passes num_fp)",
    "duplicates": "DATASET.NOISE.RELEASE_DUPLICATES True: wrong images drawn with random.choices (with "
                  "replacement, as the release: an image can fill two slots of one class) and clean ones "
                  "with replacement when the first half has fewer than K; False (default): "
                  "random.Random.sample (no repeats), and a class whose first half has n < K images keeps "
                  "each once (the release's draw first, in draw order, then the rest in split order), "
                  "floor(rate * n + 0.5) of them wrong",
    "labels": "every pick of class c is labelled c; the training set lists classes in ascending order, "
              "each in pick order (wrong ones first)",
}


def release_noise(split_labels, rate, num_shots, num_classes, seed, noise_type="sym", duplicates=False):
    """The released code's sampler (CEWu/PTNL ``select_top_k_similarity_per_class_with_noisy_label``;
    JoAPR's ``add_noise.py`` symflip is the same algorithm), over the labels of the whole training
    split in split order. It builds the few-shot set itself.

    What is drawn from which generator:

    - class c's images (split order) are cut at ``ceil(n_c / 2)``: first half = clean candidates,
      second half = the pool wrong images come from;
    - ``num_fp = noisy_count(rate, num_shots)`` wrong images per class, from ``random.Random(seed)``
      (one generator, classes in ascending order; the release uses Python's global ``random`` after
      ``random.seed(seed)``, so a release run matches only if nothing consumed it before the call,
      as in JoAPR, which seeds it right there): ``sym``: candidates ``list(S.difference(first_c,
      second_c, used))`` with S the set of all second-half indices built in class then split order,
      i.e. CPython's set iteration order exactly as the release lists it; pair types: the unused
      second-half images of class ``c - shift`` (class c + 1 for ``pair``), in split order. With
      ``duplicates`` ``rng.choices(candidates, k=num_fp)`` (with replacement, the release); without,
      ``rng.sample(candidates, num_fp)``. Images taken by a class are never offered to a later one;
    - K clean picks from ``numpy.random.default_rng(seed)`` (one generator, classes in ascending
      order): ``choice(n_first, size=K, replace=n_first < K)`` as the release; the first ``num_fp``
      picks are replaced by the wrong images. Without ``duplicates`` a class with ``n_first < K``
      makes the same draw (so later classes draw what the release draws) but keeps each of its
      ``n_first`` images once (the drawn ones in draw order, then the others in split order) and
      gets ``noisy_count(rate, n_first)`` wrong images.

    Returns ``picks`` (class -> split indices, wrong ones first), ``index`` (all picks, classes in
    ascending order), ``given`` (the class each pick fills), ``true`` (its true label), ``noisy``,
    ``num_fp`` and ``repeats`` (picks that repeat an earlier pick of their class). Raises
    ``NoiseError`` when a class's candidates cannot supply its wrong images.
    """
    check_protocol(rate, noise_type, "release")
    if int(num_shots) < 1:
        raise NoiseError("DATASET.NOISE.MODE release draws K shots per class and needs DATASET.NUM_SHOTS >= 1, "
                         "got {}".format(num_shots))
    nt = _noise_type(noise_type)
    labels = np.asarray(split_labels, dtype=np.int64)
    classes = sorted(set(labels.tolist()))
    K = int(num_shots)
    num_fp = noisy_count(rate, K)
    first, second, second_list = {}, {}, []
    for c in classes:
        idx = np.flatnonzero(labels == c).tolist()  # Python ints, split order
        half = int(math.ceil(len(idx) * 0.5))
        first[c], second[c] = idx[:half], idx[half:]
        second_list.extend(idx[half:])
    second_all = set(second_list)
    py_rng = random.Random(seed)
    np_rng = np.random.default_rng(seed=seed)
    used = set()
    picks, short = {}, []
    for c in classes:
        n = len(first[c])
        small = not duplicates and n < K
        k_wrong = noisy_count(rate, n) if small else num_fp
        if nt.release == "pair":
            source = (c - nt.shifts["swap"]) % num_classes
            candidates = [i for i in second.get(source, []) if i not in used]
        else:
            candidates = list(second_all.difference(first[c], second[c], used))
        if k_wrong and (not candidates if duplicates else len(candidates) < k_wrong):
            short.append((c, k_wrong, len(candidates)))
            continue
        wrong = (py_rng.choices(candidates, k=k_wrong) if duplicates else py_rng.sample(candidates, k_wrong)) \
            if k_wrong else []
        used.update(wrong)
        chosen = np_rng.choice(n, size=K, replace=n < K).tolist()  # the release's draw, always: one stream
        if small:  # each first-half image once: the drawn ones in draw order, then the rest in split order
            chosen = list(dict.fromkeys(chosen + list(range(n))))
        clean = [first[c][j] for j in chosen]
        picks[c] = wrong + clean[len(wrong):]
    if short:
        raise NoiseError(
            "Release noise ({}) at rate {} needs {} wrong images per class from the other classes' second "
            "halves, and some classes have too few left: {}. Lower DATASET.NOISE.RATE or "
            "DATASET.NUM_SHOTS{}.".format(
                noise_type, rate, num_fp,
                ", ".join("class {} needs {}, has {}".format(*s) for s in short[:8]),
                "" if duplicates else ", or set DATASET.NOISE.RELEASE_DUPLICATES True (the release's draw "
                                      "with replacement)"))
    index = np.array([i for c in classes for i in picks[c]], dtype=np.int64)
    given = np.array([c for c in classes for _ in picks[c]], dtype=np.int64)
    true = labels[index] if len(index) else np.zeros(0, dtype=np.int64)
    repeats = sum(len(p) - len(set(p)) for p in picks.values())
    return {"picks": picks, "index": index, "given": given, "true": true, "noisy": true != given,
            "num_fp": num_fp, "repeats": repeats}


def transition_matrix(true, given, num_classes):
    """Counts of (true label, given label) pairs, as a C x C list of lists."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(true, dtype=np.int64), np.asarray(given, dtype=np.int64)), 1)
    return m.tolist()
