"""Deprecated: moved to ``ptnl.data.base`` (splits in ``ptnl.data.splits``, few-shot caches in
``ptnl.data.fewshot``, files in ``ptnl.io``, label noise in ``ptnl.noise.label_training_set``)."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.data.base")
from ptnl.data.base import DatasetError, PTNLDatasetBase  # noqa: E402,F401
from ptnl.data.fewshot import _DatumUnpickler  # noqa: E402,F401
from ptnl.io import atomic_write, user_cache_dir  # noqa: E402,F401
from ptnl.noise import label_training_set  # noqa: E402


def add_label_noise(cfg, items, pool, lab2cname):
    """Deprecated: ``ptnl.noise.label_training_set(cfg, items, pool=..., lab2cname=...)``."""
    return label_training_set(cfg, items, pool=pool, lab2cname=lab2cname)
