"""Noise types: which wrong label a noisy sample gets, one class per type in one registry.

A type answers two questions, one per protocol (``ptnl.noise.protocols``):
- ``flip``: the wrong label of each chosen sample (``flip_labels``);
- ``swap``: which pool image replaces a slot of class c (``swap_queues`` orders the pool once,
  ``swap_take`` picks for one slot).

A new type is one class in one file::

    @register_noise_type("my_type")
    class MyType(NoiseType):
        def flip_labels(self, labels, offsets, num_classes, scores): ...
        def swap_take(self, c, state): ...

then ``DATASET.NOISE.TYPE my_type``. Every random draw must come from the generators the
protocols pass in (``offsets`` for flip, ``state.rng`` for swap), so runs stay deterministic.
"""
from typing import Dict, List, Optional, Tuple

import numpy as np

from ptnl.errors import PTNLError
from ptnl.registry import Registry


class NoiseError(PTNLError, ValueError):
    """A noise protocol cannot be applied as asked."""


NOISE_TYPES = Registry("noise type", "DATASET.NOISE.TYPE", error=NoiseError)


def register_noise_type(name: str):
    """Decorator: register a ``NoiseType`` subclass as ``DATASET.NOISE.TYPE`` ``name``."""
    return NOISE_TYPES.register(name)


def available_noise_types() -> List[str]:
    return NOISE_TYPES.names()


def noise_type(name: str) -> "NoiseType":
    """The noise type registered as ``name``; ``NoiseError`` listing the known ones otherwise."""
    return NOISE_TYPES.lookup(name)()


def top_wrong_class(scores, labels):
    """Per row, the class other than ``labels[i]`` with the highest score (confusion noise)."""
    s = np.array(scores, dtype=np.float64, copy=True)
    labels = np.asarray(labels, dtype=np.int64)
    s[np.arange(len(labels)), labels] = -np.inf
    return s.argmax(axis=1)


class SwapState:
    """What ``swap_take`` may read: the generator, the queues, which pool images are used."""

    def __init__(self, rng, queues, used, pool_labels, num_classes, pool_scores=None):
        self.rng, self.queues, self.used = rng, queues, used
        self.pool_labels, self.num_classes, self.pool_scores = pool_labels, num_classes, pool_scores

    def next_unused(self, queue: list) -> Optional[int]:
        """The first pool image of ``queue`` not used yet (used ones are dropped), or None."""
        while queue and self.used[queue[0]]:
            queue.pop(0)
        return queue[0] if queue else None


class NoiseType:
    """Base of the noise types. ``needs_scores``: the protocols need zero-shot scores of the
    images (the scorer is asked only then)."""

    needs_scores = False
    release = None  # "sym" or "pair": how DATASET.NOISE.MODE release draws for this type (None: not supported)

    def flip_labels(self, labels: np.ndarray, offsets: np.ndarray, num_classes: int,
                    scores: Optional[np.ndarray]) -> np.ndarray:
        """Wrong labels for the samples of true ``labels`` chosen by the flip protocol; ``offsets``
        are uniform draws in [1, C) (one per sample), ``scores`` their rows of zero-shot scores."""
        raise NotImplementedError

    def swap_queues(self, rng, pool_labels: np.ndarray, classes: List[int], num_classes: int,
                    pool_scores: Optional[np.ndarray]) -> Dict[int, list]:
        """The pool images in the order the swap protocol takes them, by queue key (default: each
        true class's images in a random order)."""
        return {y: list(rng.permutation(np.flatnonzero(pool_labels == y))) for y in range(num_classes)}

    def swap_take(self, c: int, state: SwapState) -> Tuple[Optional[int], bool]:
        """(pool index, is_fallback) of the image that fills a noisy slot of class ``c``, or
        (None, False) when none is left. Called for every slot whatever the rate."""
        raise NotImplementedError

    def label_rule(self, mode: str) -> Optional[str]:
        """In words, which wrong label an image of class y gets under protocol ``mode`` (written
        to noise.json), when the type fixes it."""
        return None


@register_noise_type("sym")
class Symmetric(NoiseType):
    """Uniform over the other classes."""

    release = "sym"

    def flip_labels(self, labels, offsets, num_classes, scores):
        return (labels + offsets) % num_classes

    def swap_take(self, c, state):
        candidates = [y for y in range(state.num_classes)
                      if y != c and state.next_unused(state.queues[y]) is not None]
        u = state.rng.random()  # one draw per slot, always, so the stream does not depend on availability
        return (state.next_unused(state.queues[candidates[int(u * len(candidates))]]) if candidates else None), False


class _PairBase(NoiseType):
    """An image of class y gets the label y + shift (mod C); ``shifts`` gives the shift per
    protocol."""

    shifts = {"flip": 1, "swap": 1}
    origin = {}
    release = "pair"  # release mode: class c takes images of class c - shifts["swap"], as under swap

    def flip_labels(self, labels, offsets, num_classes, scores):
        return (labels + self.shifts["flip"]) % num_classes

    def swap_take(self, c, state):  # slot of class c takes an image of class c - shift
        return state.next_unused(state.queues[(c - self.shifts["swap"]) % state.num_classes]), False

    def label_rule(self, mode):
        shift = self.shifts[mode]
        rule = "an image of class y is labelled (y {} 1) mod C".format("+" if shift > 0 else "-")
        return rule + (" ({})".format(self.origin[mode]) if mode in self.origin else "")


@register_noise_type("pair")
class Pair(_PairBase):
    """Each protocol's own pair direction: swap (JoAPR's pairflip) puts images of class c + 1 into
    class c, so y is labelled y - 1; flip (NLPrompt's asym) relabels y as y + 1. ``pair_next`` and
    ``pair_prev`` fix one direction for both protocols."""

    shifts = {"flip": 1, "swap": -1}
    origin = {"swap": "JoAPR's pairflip", "flip": "NLPrompt's asym"}


@register_noise_type("pair_next")
class PairNext(_PairBase):
    """y is labelled y + 1 under both protocols (PTNL's pair before it followed each protocol's origin)."""

    shifts = {"flip": 1, "swap": 1}


@register_noise_type("pair_prev")
class PairPrev(_PairBase):
    """y is labelled y - 1 under both protocols."""

    shifts = {"flip": -1, "swap": -1}


@register_noise_type("confusion")
class Confusion(NoiseType):
    """The wrong class zero-shot CLIP scores highest for the image. swap: class c receives images
    whose top wrong class is c; when none is left, the unused other-class image scoring highest
    for c (a fallback)."""

    needs_scores = True

    def flip_labels(self, labels, offsets, num_classes, scores):
        return top_wrong_class(scores, labels)

    def swap_queues(self, rng, pool_labels, classes, num_classes, pool_scores):
        top = top_wrong_class(pool_scores, pool_labels)
        return {c: list(rng.permutation(np.flatnonzero(top == c))) for c in classes}

    def swap_take(self, c, state):
        j = state.next_unused(state.queues[c])
        if j is not None:
            return j, False
        free = np.flatnonzero(~state.used & (state.pool_labels != c))
        return (int(free[np.argmax(state.pool_scores[free, c])]) if len(free) else None), True
