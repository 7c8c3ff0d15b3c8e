"""Where a training run's randomness comes from: ``DATALOADER.RANDOMNESS``.

``per_sample`` (default): the sampler's order is drawn from (seed, epoch) and each sample's
augmentation from (seed, epoch, sample index), so a run's batches do not depend on
``DATALOADER.NUM_WORKERS``, on how much the model's initialisation drew from the global
generators, or on whether the run was interrupted and resumed.

``coop``: the loader exactly as Dassl builds it for CoOp (a ``RandomSampler`` on the global torch
generator, augmentations from the global generators of the main or worker processes), so the
stream is CoOp's own; it changes with the worker count and with every draw made before training.
"""
import contextlib
import os
import random
from typing import Iterator, Tuple

import numpy as np
import torch
from torch.utils.data import Sampler

from ptnl import compat
from ptnl.config import RANDOMNESS
from ptnl.errors import ConfigError

_SAMPLERS = {"RandomSampler": True, "SequentialSampler": False}  # per_sample: name -> shuffled


def check_randomness(cfg):
    """``ValueError`` naming the key and the choices when DATALOADER.RANDOMNESS is unknown, or when
    ``per_sample`` is asked with a train sampler it does not reproduce."""
    mode = cfg.DATALOADER.RANDOMNESS
    if mode not in RANDOMNESS:
        raise ConfigError("DATALOADER.RANDOMNESS must be one of {}, got {!r}".format(RANDOMNESS, mode))
    sampler = cfg.DATALOADER.TRAIN_X.SAMPLER
    if mode == "per_sample" and sampler not in _SAMPLERS:
        raise ConfigError("DATALOADER.RANDOMNESS per_sample draws the order of {} only, got DATALOADER.TRAIN_X."
                         "SAMPLER {!r}; set DATALOADER.RANDOMNESS coop to use Dassl's sampler".format(
                             sorted(_SAMPLERS), sampler))


def stream_seed(*keys: int) -> int:
    """A 63-bit seed from non-negative integers, the same on every machine (numpy's SeedSequence)."""
    words = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block with torch's CPU, numpy's and Python's global generators seeded from ``seed``
    (what torchvision and user transforms draw from), then give them back their states."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.random.default_generator.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


class EpochSampler(Sampler):
    """Every index once per epoch, in an order drawn from (seed, epoch) alone (or in order when
    ``shuffle`` is False), as (epoch, index) keys for a ``PerSampleRandomness`` dataset. The
    trainer calls ``set_epoch`` before each epoch."""

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True):
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def order(self, epoch: int) -> list:
        if not self.shuffle:
            return list(range(self.num_samples))
        gen = torch.Generator().manual_seed(stream_seed(self.seed, epoch))
        return torch.randperm(self.num_samples, generator=gen).tolist()

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, i) for i in self.order(epoch)])

    def __len__(self) -> int:
        return self.num_samples


class PerSampleRandomness:
    """Mixin for a Dassl ``DatasetWrapper``: item (epoch, index) is built with the global
    generators seeded from (seed, epoch, index), so its augmentation is the same in any worker."""

    seed = 0

    def __getitem__(self, key):
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        with seeded(stream_seed(self.seed, epoch, idx)):
            return super().__getitem__(idx)


def run_seed(cfg) -> int:
    """The seed of a run's data stream: SEED, or a fresh one when SEED < 0 (no fixed seed)."""
    return cfg.SEED if cfg.SEED >= 0 else int.from_bytes(os.urandom(7), "little")


def build_train_loader(cfg, data_source, transform, dataset_wrapper=None, seed=None, drop_last=None):
    """The training loader of DATALOADER.RANDOMNESS over ``data_source`` with ``transform``:
    Dassl's own (``coop``) or an ``EpochSampler`` over a ``PerSampleRandomness`` wrapper of
    ``dataset_wrapper`` (Dassl's ``DatasetWrapper`` when None); same batch size, drop_last rule
    and batch dicts as Dassl's. ``drop_last=False`` keeps the last partial batch (sample-selection
    subsets: every item is trained on)."""
    check_randomness(cfg)
    x = cfg.DATALOADER.TRAIN_X
    dassl_drop = len(data_source) >= x.BATCH_SIZE
    if cfg.DATALOADER.RANDOMNESS == "coop":
        # Dassl drops the last batch of a training loader (is_train); is_train=False keeps it, same transform
        return compat.build_data_loader(
            cfg, sampler_type=x.SAMPLER, data_source=data_source, batch_size=x.BATCH_SIZE,
            n_domain=x.N_DOMAIN, n_ins=x.N_INS, tfm=transform, is_train=drop_last is not False or not dassl_drop,
            dataset_wrapper=dataset_wrapper)
    base = dataset_wrapper or compat.DatasetWrapper
    wrapper = type(base.__name__, (PerSampleRandomness, base), {"seed": run_seed(cfg) if seed is None else seed})
    workers = cfg.DATALOADER.NUM_WORKERS
    return torch.utils.data.DataLoader(
        wrapper(cfg, data_source, transform=transform, is_train=True),
        batch_size=x.BATCH_SIZE,
        sampler=EpochSampler(len(data_source), wrapper.seed, shuffle=_SAMPLERS[x.SAMPLER]),
        num_workers=workers,
        drop_last=dassl_drop if drop_last is None else drop_last and dassl_drop,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
        persistent_workers=workers > 0,  # the epoch travels in the keys: no per-epoch worker start-up
        # the loader's own seeds come from here, not from the global generator, which training then
        # leaves untouched (each item reseeds its worker's generators itself)
        generator=torch.Generator().manual_seed(stream_seed(wrapper.seed, 1 << 30)),
    )


def set_loader_epoch(loader, epoch: int):
    """Tell an ``EpochSampler`` loader which epoch comes next (no-op for Dassl's loaders)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
