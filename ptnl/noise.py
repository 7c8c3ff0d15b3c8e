"""Label-noise protocols as pure functions over label arrays (DESIGN "Label noise").

Given the few-shot set S (labels ``y``) and a rate r:
- ``swap`` (PTNL / JoAPR): class c keeps exactly n_c items labelled c, of which
  ``noisy_count(r, n_c)`` are replaced by images of other classes taken from a pool (the training
  split outside S, no image used twice); the class they come from follows the noise type.
- ``flip`` (NLPrompt): ``noisy_count(r, |S|)`` items of S, drawn uniformly, get a wrong label.
Noise types give the wrong label of an image of true class y:
- ``sym``: uniform over the other classes; ``pair``: (y + 1) mod C.

Every draw comes from a generator seeded by (seed, key, mode, type) alone, so results do not
depend on what else consumed the global RNGs. All draws are made in a fixed order for every
slot whatever the rate, and a rate only decides how long a prefix is used, so the noisy items at
a lower rate are a subset of those at a higher rate (with the same replacement images and
labels).
"""
import zlib

import numpy as np

NOISE_TYPES = ("sym", "pair")
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


def flip_noise(labels, rate, num_classes, seed, noise_type="sym", key=""):
    """NLPrompt's protocol. Returns ``given`` (labels to train on) and ``noisy`` (bool mask)."""
    check_protocol(rate, noise_type, "flip")
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if num_classes < 2:
        raise NoiseError("Label noise needs at least 2 classes, got {}".format(num_classes))
    rng = noise_rng(seed, key, "flip", noise_type)
    order = rng.permutation(n)  # rank -> item
    offsets = rng.integers(1, num_classes, size=n)  # sym: a uniform other class, per rank
    given = labels.copy()
    noisy = np.zeros(n, dtype=bool)
    for rank in range(noisy_count(rate, n)):
        i = order[rank]
        step = offsets[rank] if noise_type == "sym" else 1
        given[i] = (labels[i] + step) % num_classes
        noisy[i] = True
    return {"given": given, "noisy": noisy}


def swap_noise(labels, pool_labels, rate, num_classes, seed, noise_type="sym", key=""):
    """PTNL's protocol. Returns ``source`` (per item of S: -1 to keep it, else the index of the
    pool image that replaces it), ``true`` (true label of each resulting item) and ``noisy``;
    the given labels are ``labels`` unchanged. Raises ``NoiseError`` when the pool cannot supply
    the requested replacements."""
    check_protocol(rate, noise_type, "swap")
    labels = np.asarray(labels, dtype=np.int64)
    pool_labels = np.asarray(pool_labels, dtype=np.int64)
    rng = noise_rng(seed, key, "swap", noise_type)
    classes = sorted(set(labels.tolist()))
    slots = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}  # rank -> item
    pools = {y: list(rng.permutation(np.flatnonzero(pool_labels == y))) for y in range(num_classes)}
    wanted = {c: noisy_count(rate, len(slots[c])) for c in classes}

    source = np.full(len(labels), -1, dtype=np.int64)
    true = labels.copy()
    missing = []
    # Assign every slot in (rank, class) order whatever the rate, so lower rates are prefixes.
    for rank in range(max((len(s) for s in slots.values()), default=0)):
        for c in classes:
            if rank >= len(slots[c]):
                continue
            if noise_type == "sym":
                others = [y for y in range(num_classes) if y != c]
                candidates = [y for y in others if pools[y]]
                # one draw per slot, always, so the stream does not depend on availability
                u = rng.random()
                src = candidates[int(u * len(candidates))] if candidates else None
            else:  # pair: an image of class y is labelled y + 1, so slot c takes class c - 1
                src = (c - 1) % num_classes
                src = src if pools[src] else None
            if rank >= wanted[c]:
                if src is not None:
                    pools[src].pop(0)  # reserved for this slot at higher rates
                continue
            if src is None:
                missing.append(c)
                continue
            item = slots[c][rank]
            source[item] = pools[src].pop(0)
            true[item] = src
    if missing:
        need = sum(wanted.values())
        raise NoiseError(
            "Swap noise at rate {} needs {} replacement images from other classes for {} classes, "
            "but the training split outside the few-shot set has only {} (classes left short: {}). "
            "Lower DATASET.NOISE.RATE or DATASET.NUM_SHOTS, or use DATASET.NOISE.MODE flip.".format(
                rate, need, len(classes), len(pool_labels), sorted(set(missing))[:10]))
    return {"source": source, "true": true, "noisy": source >= 0}


def transition_matrix(true, given, num_classes):
    """Counts of (true label, given label) pairs, as a C x C list of lists."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(true, dtype=np.int64), np.asarray(given, dtype=np.int64)), 1)
    return m.tolist()


def apply_noise(items, pool, rate, noise_type, mode, seed, num_classes, key, make_item,
                classnames=None):
    """Apply a protocol to a few-shot list of Dassl ``Datum`` (``items``; ``pool`` the candidates
    for swap, may be None for flip). ``make_item(impath, label, classname)`` builds a Datum.

    Returns ``(new_items, true_labels, record)`` where ``record`` is the ``noise.json`` content.
    """
    check_protocol(rate, noise_type, mode)
    labels = [it.label for it in items]
    names = dict(classnames or {})
    for it in items:
        names.setdefault(it.label, it.classname)
    if rate == 0:
        new_items, true = list(items), list(labels)
    elif mode == "flip":
        out = flip_noise(labels, rate, num_classes, seed, noise_type, key)
        true = list(labels)
        new_items = [it if not flip else make_item(it.impath, int(g), names.get(int(g), str(g)))
                     for it, g, flip in zip(items, out["given"], out["noisy"])]
    else:
        if pool is None:
            raise NoiseError("Swap noise needs the full training split to draw replacement images "
                             "from; this dataset does not expose one. Use DATASET.NOISE.MODE flip.")
        out = swap_noise(labels, [p.label for p in pool], rate, num_classes, seed, noise_type, key)
        true = out["true"].tolist()
        new_items = [it if s < 0 else make_item(pool[s].impath, it.label, it.classname)
                     for it, s in zip(items, out["source"])]
    given = [it.label for it in new_items]
    n_noisy = sum(int(t != g) for t, g in zip(true, given))
    per_class = {}
    for t, g in zip(true, given):
        entry = per_class.setdefault(int(g), {"shots": 0, "noisy": 0})
        entry["shots"] += 1
        entry["noisy"] += int(t != g)
    record = {
        "type": noise_type, "mode": mode, "rate": rate, "seed": seed,
        "realised_rate": n_noisy / max(len(given), 1),
        "num_noisy": n_noisy, "num_samples": len(given), "count_rule": COUNT_RULE,
        "generator": "ptnl.noise ({} / {})".format(mode, noise_type),
        "per_class": {str(k): v for k, v in sorted(per_class.items())},
        "transition": transition_matrix(true, given, num_classes),
        "samples": [{"impath": it.impath, "true_label": int(t), "label": int(g)}
                    for it, t, g in zip(new_items, true, given)],
    }
    return new_items, [int(t) for t in true], record
