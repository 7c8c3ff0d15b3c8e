"""CoCoOp's base-to-new protocol (``DATASET.SUBSAMPLE_CLASSES``): the sorted labels of the training
list are cut in two, the first ceil(n/2) are the base classes and the rest the new ones, and every
split keeps one half, relabelled 0..k-1 in label order."""
import math
from typing import Callable, List, Optional, Sequence, Tuple

from ptnl.errors import ConfigError

SUBSAMPLE_CHOICES = ("all", "base", "new")


def subsample_labels(labels: Sequence[int], subsample: str) -> List[int]:
    """The original labels ``subsample`` keeps, in order: of the sorted distinct ``labels`` (n of
    them), ``base`` is the first m = ceil(n/2) (the extra class of an odd n), ``new`` the rest,
    ``all`` every one."""
    if subsample not in SUBSAMPLE_CHOICES:
        raise ConfigError("DATASET.SUBSAMPLE_CLASSES must be one of {}, got {!r}".format(SUBSAMPLE_CHOICES, subsample))
    distinct = sorted(set(int(y) for y in labels))
    m = math.ceil(len(distinct) / 2)
    return {"all": distinct, "base": distinct[:m], "new": distinct[m:]}[subsample]


def subsample_classes(subsample: str, *splits: Optional[Sequence],
                      relabel_item: Optional[Callable] = None) -> Tuple[Optional[list], ...]:
    """The splits restricted to the classes ``subsample`` keeps and relabelled to their rank among
    them, exactly as CoCoOp's ``OxfordPets.subsample_classes``: the classes are decided by the first
    split (the few-shot training list), class names are unchanged, ``all`` returns the splits as
    they are. A split that is None stays None (a dataset without val).

    Args:
        subsample: ``all`` | ``base`` | ``new``.
        *splits: lists of Dassl ``Datum`` (``impath``, ``label``, ``classname``).
        relabel_item: ``(item, new label) -> item``; default: a copy of the item (a Dassl ``Datum``
            keeps its fields in ``_impath``, ``_label``, ...) with the new label.
    """
    if subsample == "all":
        subsample_labels([], subsample)
        return tuple(splits)
    if not splits or not splits[0]:
        raise ConfigError("DATASET.SUBSAMPLE_CLASSES {}: the training list is empty, so there are no classes "
                          "to split into base and new".format(subsample))
    kept = subsample_labels([d.label for d in splits[0]], subsample)
    relabel = {y: i for i, y in enumerate(kept)}
    make = relabel_item or _relabelled
    return tuple(None if split is None else [make(d, relabel[d.label]) for d in split if d.label in relabel]
                 for split in splits)


def _relabelled(item, label):
    """A copy of the Datum ``item`` with ``label`` (no file check: the image was read before)."""
    new = type(item).__new__(type(item))
    new.__dict__.update(item.__dict__)
    new.__dict__["_label"] = int(label)
    return new
