"""Label-noise protocols as pure functions over label arrays (DESIGN "Label noise").

Given the few-shot set S (labels ``y``) and a rate r:
- ``swap`` (PTNL / JoAPR): class c keeps exactly n_c items labelled c, of which
  ``noisy_count(r, n_c)`` are replaced by images of other classes taken from a pool (the training
  split outside S, no image used twice); the class they come from follows the noise type.
- ``flip`` (NLPrompt): ``noisy_count(r, |S|)`` items of S, drawn uniformly, get a wrong label.
Noise types give the wrong label of an image of true class y:
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

NOISE_TYPES = ("sym", "pair", "confusion")
NOISE_MODES = ("swap", "flip")
COUNT_RULE = "floor(rate * n + 0.5) noisy items out of n (n = shots of the class for swap, |S| for flip)"


class NoiseError(ValueError):
    """A noise protocol cannot be applied as asked."""


def noisy_count(rate, n):
    """How many of ``n`` items are noisy at ``rate``: rate*n rounded half up (monotone in rate)."""
    return int(np.floor(rate * n + 0.5))


def check_protocol(rate, noise_type, mode):
    if not (0.0 <= rate < 1.0):
        raise NoiseError("Noise rate must be in [0, 1) (DATASET.NOISE.RATE), got {}".format(rate))
    if noise_type not in NOISE_TYPES:
        raise NoiseError("Unknown noise type {!r} (DATASET.NOISE.TYPE): expected one of {}".format(
            noise_type, ", ".join(NOISE_TYPES)))
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
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if num_classes < 2:
        raise NoiseError("Label noise needs at least 2 classes, got {}".format(num_classes))
    rng = noise_rng(seed, key, "flip", noise_type)
    order = rng.permutation(n)  # rank -> item
    offsets = rng.integers(1, num_classes, size=n)  # sym: a uniform other class, per rank
    if noise_type == "confusion":
        if scores is None or len(scores) != n:
            raise NoiseError("Confusion noise needs zero-shot scores for every few-shot item")
        confused = top_wrong_class(scores, labels)
    given = labels.copy()
    noisy = np.zeros(n, dtype=bool)
    for rank in range(noisy_count(rate, n)):
        i = order[rank]
        if noise_type == "confusion":
            given[i] = confused[i]
        else:
            step = offsets[rank] if noise_type == "sym" else 1
            given[i] = (labels[i] + step) % num_classes
        noisy[i] = True
    return {"given": given, "noisy": noisy}


def top_wrong_class(scores, labels):
    """Per row, the class other than ``labels[i]`` with the highest score (confusion noise)."""
    s = np.array(scores, dtype=np.float64, copy=True)
    labels = np.asarray(labels, dtype=np.int64)
    s[np.arange(len(labels)), labels] = -np.inf
    return s.argmax(axis=1)


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
    labels = np.asarray(labels, dtype=np.int64)
    pool_labels = np.asarray(pool_labels, dtype=np.int64)
    rng = noise_rng(seed, key, "swap", noise_type)
    classes = sorted(set(labels.tolist()))
    slots = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}  # rank -> item
    wanted = {c: noisy_count(rate, len(slots[c])) for c in classes}
    used = np.zeros(len(pool_labels), dtype=bool)
    if noise_type == "confusion":
        if pool_scores is None or len(pool_scores) != len(pool_labels):
            raise NoiseError("Confusion noise needs zero-shot scores for every pool image")
        top = top_wrong_class(pool_scores, pool_labels)
        queues = {c: list(rng.permutation(np.flatnonzero(top == c))) for c in classes}
        scores = np.asarray(pool_scores, dtype=np.float64)
    else:
        queues = {y: list(rng.permutation(np.flatnonzero(pool_labels == y))) for y in range(num_classes)}

    def next_unused(queue):
        while queue and used[queue[0]]:
            queue.pop(0)
        return queue[0] if queue else None

    def take(c):
        """(pool index, is_fallback) for a slot of class c, or (None, False) if none is left."""
        if noise_type == "sym":
            candidates = [y for y in range(num_classes) if y != c and next_unused(queues[y]) is not None]
            u = rng.random()  # one draw per slot, always, so the stream does not depend on availability
            return (next_unused(queues[candidates[int(u * len(candidates))]]) if candidates else None), False
        if noise_type == "pair":
            return next_unused(queues[(c - 1) % num_classes]), False
        j = next_unused(queues[c])
        if j is not None:
            return j, False
        free = np.flatnonzero(~used & (pool_labels != c))
        return (int(free[np.argmax(scores[free, c])]) if len(free) else None), True

    source = np.full(len(labels), -1, dtype=np.int64)
    true = labels.copy()
    fallback = np.zeros(len(labels), dtype=bool)
    short = {}
    # Assign every slot in (rank, class) order whatever the rate, so lower rates are prefixes.
    for rank in range(max((len(s) for s in slots.values()), default=0)):
        for c in classes:
            if rank >= len(slots[c]):
                continue
            j, is_fallback = take(c)
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


def apply_noise(items, pool, rate, noise_type, mode, seed, num_classes, key, make_item,
                classnames=None, score_fn=None, num_shots=None):
    """Apply a protocol to a few-shot list of Dassl ``Datum`` (``items``).

    ``pool``: the images swap may draw from (the full training split; items of S are left out
    here), None when the dataset has none. ``make_item(impath, label, classname)`` builds a Datum.
    ``score_fn(impaths)`` returns zero-shot scores [len(impaths), C]; only confusion noise calls
    it (on S for flip, on the pool for swap). Returns ``(new_items, true_labels, record)`` where
    ``record`` is the ``noise.json`` content.
    """
    check_protocol(rate, noise_type, mode)
    labels = [it.label for it in items]
    names = dict(classnames or {})
    for it in items:
        names.setdefault(it.label, it.classname)

    def scores_of(paths):
        if score_fn is None:
            raise NoiseError("Confusion noise needs zero-shot CLIP scores, and no scorer was given")
        return np.asarray(score_fn(paths), dtype=np.float64)

    fallback = np.zeros(len(items), dtype=bool)
    if rate == 0:
        new_items, true = list(items), list(labels)
    elif mode == "flip":
        scores = scores_of([it.impath for it in items]) if noise_type == "confusion" else None
        out = flip_noise(labels, rate, num_classes, seed, noise_type, key, scores=scores)
        true = list(labels)
        new_items = [it if not flip else make_item(it.impath, int(g), names.get(int(g), str(g)))
                     for it, g, flip in zip(items, out["given"], out["noisy"])]
    else:
        if pool is None:
            raise NoiseError("Swap noise needs the full training split to draw replacement images "
                             "from; this dataset does not expose one. Use DATASET.NOISE.MODE flip.")
        chosen = {it.impath for it in items}
        pool = [p for p in pool if p.impath not in chosen]
        scores = scores_of([p.impath for p in pool]) if noise_type == "confusion" else None
        out = swap_noise(labels, [p.label for p in pool], rate, num_classes, seed, noise_type, key,
                         pool_scores=scores)
        true = out["true"].tolist()
        fallback = out["fallback"]
        new_items = [it if s < 0 else make_item(pool[s].impath, it.label, it.classname)
                     for it, s in zip(items, out["source"])]
    given = [it.label for it in new_items]
    n_noisy = sum(int(t != g) for t, g in zip(true, given))
    per_class = {}
    for t, g in zip(true, given):
        entry = per_class.setdefault(int(g), {"shots": 0, "noisy": 0})
        entry["shots"] += 1
        entry["noisy"] += int(t != g)
    shots = num_shots if num_shots is not None else max((v["shots"] for v in per_class.values()), default=0)
    record = {
        "type": noise_type, "mode": mode, "rate": rate, "seed": seed,
        "realised_rate": n_noisy / max(len(given), 1),
        "num_noisy": n_noisy, "num_samples": len(given), "num_shots": shots,
        "rules": {
            "count": COUNT_RULE,
            "small_classes": "a class with fewer than K shots keeps all it has; swap replaces "
                             "floor(rate * n + 0.5) of its n",
            "pool": "swap draws from the training split outside the few-shot set, each image at most "
                    "once; too few images is an error naming the classes left short",
            "confusion_fallback": "swap/confusion: when no unused image has class c as its top wrong "
                                  "class, the unused other-class image scoring highest for c is taken",
        },
        "small_classes": {str(k): v["shots"] for k, v in sorted(per_class.items()) if v["shots"] < shots},
        "confusion_fallbacks": int(fallback.sum()),
        "generator": "ptnl.noise ({} / {})".format(mode, noise_type),
        "per_class": {str(k): v for k, v in sorted(per_class.items())},
        "transition": transition_matrix(true, given, num_classes),
        "samples": [{"impath": it.impath, "true_label": int(t), "label": int(g)}
                    for it, t, g in zip(new_items, true, given)],
    }
    return new_items, [int(t) for t in true], record
