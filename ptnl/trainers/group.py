"""Grouped runs: several runs of a grid that see the same training data stream, trained in one
process on one pass of that stream. Each batch is decoded, augmented and put through the frozen
image encoder once; each member keeps its own prompt learner, loss, optimiser, scheduler,
checkpoints, diagnostics, ``log.txt`` and run folder, and ends exactly where it would alone.

The rule (``stream_key``): members are runs of a trainer that declares ``GROUPABLE`` (it trains
only its prompt learner through the base training step) with the same dataset settings (root,
shots, noise, subsampling: every ``DATASET`` key), input pipeline (every ``INPUT`` key), loader
(every ``DATALOADER`` key but the worker count), ``RANDOMNESS per_sample``, seed (fixed), backbone,
precision, device and epoch count. Under ``per_sample`` the order and the augmentations are drawn
from (seed, epoch, index) alone, and each member is built from freshly seeded generators, so its
model-initialisation draws are its own and touch nobody's stream. What may differ: trainer, loss
and its options, optimiser, prompt settings, test settings, output folder. Each member's training
items (paths and noisy labels) are compared with the first member's before anything trains.
"""
import contextlib
import sys
import time
from typing import Dict, List, Sequence, Tuple

from ptnl import compat
from ptnl.compat import global_rng_state, set_global_rng_state
from ptnl.io import get_logger
from ptnl.errors import ConfigError
from ptnl.runs.identity import flat_config
from ptnl.trainers.stacked import label_only_keys

log = get_logger(__name__)

# config keys (prefixes) whose values a group's members share: what decides the data stream
STREAM_PREFIXES = ("DATASET.", "INPUT.", "DATALOADER.")
STREAM_KEYS = ("SEED", "MODEL.BACKBONE.NAME", "TRAINER.PTNL.PREC", "USE_CUDA", "OPTIM.MAX_EPOCH")
NOT_STREAM = ("DATALOADER.NUM_WORKERS",)  # per_sample: the worker count changes no batch


def groupable(cfg) -> Tuple[bool, str]:
    """(True, "") when a run can join a group, else (False, why)."""
    cls = compat.TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    if not getattr(cls, "GROUPABLE", False):
        return False, "trainer {} does not train through the shared step".format(cfg.TRAINER.NAME)
    if cfg.DATALOADER.RANDOMNESS != "per_sample":
        return False, "DATALOADER.RANDOMNESS {} (the stream depends on the global generators)".format(
            cfg.DATALOADER.RANDOMNESS)
    if cfg.SEED < 0:
        return False, "no fixed seed"
    return True, ""


def stream_key(cfg) -> Tuple:
    """The settings that decide a run's training stream (see the module docstring): runs with
    equal keys see the same batches, image for image and augmentation for augmentation."""
    flat = flat_config(cfg)
    skip = NOT_STREAM + label_only_keys(flat)  # flip noise: other labels of the same items (each its own)
    return tuple(sorted((k, repr(v)) for k, v in flat.items()
                        if (k.startswith(STREAM_PREFIXES) or k in STREAM_KEYS) and k not in skip))


def partition(cfgs: Sequence) -> List[List[int]]:
    """Indices of ``cfgs`` in groups (in order of first appearance); a run that cannot be grouped
    is a group of its own."""
    groups: Dict[object, List[int]] = {}
    for i, cfg in enumerate(cfgs):
        ok, _ = groupable(cfg)
        groups.setdefault(stream_key(cfg) if ok else ("alone", i), []).append(i)
    return list(groups.values())


class _OncePerBatch:
    """A frozen image encoder's forward that computes once per input tensor: the members of a
    group call it on the same batch tensor and get the same features."""

    def __init__(self, module):
        self.forward = type(module).forward.__get__(module)
        self.last = None

    def __call__(self, x):
        if self.last is not None and self.last[0] is x and self.last[1] == x._version:
            return self.last[2]
        out = self.forward(x)
        self.last = (x, x._version, out)
        return out

    def clear(self):
        self.last = None


class Member:
    """One run of a group: its trainer, its stdout (the tee into its ``log.txt``) and its global
    generators' states, swapped in around everything it does."""

    def __init__(self, cfg, trainer, stdout, label):
        self.cfg, self.trainer, self.stdout, self.label = cfg, trainer, stdout, label
        self.rng = global_rng_state()

    @contextlib.contextmanager
    def scope(self):
        terminal = sys.stdout
        sys.stdout = self.stdout
        set_global_rng_state(self.rng)
        try:
            yield self.trainer
        finally:
            self.rng = global_rng_state()
            sys.stdout = terminal


def check_same_stream(members: List[Member]):
    """Every member trains on the first member's items, transform and batch size (its own labels:
    ``ptnl.trainers.stacked.prepare_group``)."""
    first = members[0].trainer

    def stream(t):
        loader = t.train_loader_x
        return ([d.impath for d in t.train_items], repr(loader.dataset.transform), loader.batch_size,
                len(loader))

    ref = stream(first)
    for m in members[1:]:
        if stream(m.trainer) != ref:
            raise ConfigError("Grouped run {} does not train on the same items, transform or batch size "
                             "as {}: run them separately (GROUP=0)".format(m.cfg.OUTPUT_DIR, members[0].cfg.OUTPUT_DIR))


def train_group(members: List[Member]):
    """Train the members in lockstep on the first member's loader: per epoch, each member's
    ``before_epoch``; per batch, each member's ``forward_backward`` on the same batch (the image
    encoder runs once); then each member's ``after_epoch`` (checkpoints, diagnostics); at the end
    each member's ``after_train`` (test, ``results.json``). A member resumed further than the
    others (its own checkpoints) sits out the epochs it has."""
    encoders = {}
    for m in members:
        visual = m.trainer.model.image_encoder
        if id(visual) not in encoders:
            encoders[id(visual)] = (visual, _OncePerBatch(visual))
            visual.forward = encoders[id(visual)][1]
    once = [e for _, e in encoders.values()]
    leader = members[0]
    try:
        for m in members:
            with m.scope() as t:
                t.before_train()
                log.info("Grouped with {} other run(s) on one data stream: {}".format(
                    len(members) - 1, ", ".join(o.cfg.OUTPUT_DIR for o in members if o is not m)))
        start = min(m.trainer.start_epoch for m in members)
        for epoch in range(start, leader.trainer.max_epoch):
            _train_epoch([m for m in members if m.trainer.start_epoch <= epoch], epoch, leader, once)
        for m in members:
            with m.scope() as t:
                t.after_train()
    finally:
        for visual, _ in encoders.values():
            visual.__dict__.pop("forward", None)


def _train_epoch(active: List[Member], epoch: int, leader: Member, once):
    """One epoch of the members in ``active``: the leader's batches, each member trained on each
    through the trainers' one batch loop (``start_batches`` / ``train_batch``) in its own scope."""
    meters = {}
    for m in active:
        with m.scope() as t:
            t.epoch = epoch
            t.before_epoch()
            meters[id(m)] = t.start_batches(len(leader.trainer.train_loader_x))
    with leader.scope():  # the loader draws nothing from the global generators (per_sample), but in its owner's scope
        batches = iter(leader.trainer.train_loader_x)
    end = time.time()
    for batch_idx, batch in enumerate(batches):
        data = time.time() - end
        batch = dict(batch, img=batch["img"].to(leader.trainer.device))  # moved once: every member gets this tensor
        for m in active:
            started = time.time()
            with m.scope() as t:
                t.train_batch(batch_idx, batch, meters[id(m)], data, started)
        for e in once:
            e.clear()
        end = time.time()
    for m in active:
        with m.scope() as t:
            t.after_epoch()
