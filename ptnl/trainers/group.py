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
import os.path as osp
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

from ptnl import compat
from ptnl.clip.weights import shared_loads
from ptnl.engine.trainer import batch_line, write_batch_scalars
from ptnl.engine.utils import AverageMeter, MetricMeter, global_rng_state, set_global_rng_state
from ptnl.errors import ConfigError
from ptnl.runs.identity import flat_config

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
    return tuple(sorted((k, repr(v)) for k, v in flat.items()
                        if (k.startswith(STREAM_PREFIXES) or k in STREAM_KEYS) and k not in NOT_STREAM))


def partition(cfgs: Sequence) -> List[List[int]]:
    """Indices of ``cfgs`` in groups (in order of first appearance); a run that cannot be grouped
    is a group of its own."""
    groups: Dict[object, List[int]] = {}
    for i, cfg in enumerate(cfgs):
        ok, _ = groupable(cfg)
        groups.setdefault(stream_key(cfg) if ok else ("alone", i), []).append(i)
    return list(groups.values())


class _Prefixed:
    """The terminal as one member sees it: each line starts with ``[label]`` (none without a
    label). Closing it leaves the terminal open: Dassl's ``Logger`` closes its console when it is
    collected, which would close the process's stdout when one run of several ends."""

    def __init__(self, stream, label=None):
        self.stream, self.prefix, self.at_start = stream, "[{}] ".format(label) if label else "", True

    def write(self, text):
        out = []
        for piece in text.splitlines(keepends=True):
            if self.at_start:
                out.append(self.prefix)
            out.append(piece)
            self.at_start = piece.endswith("\n")
        self.stream.write("".join(out))

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return False

    def close(self):
        self.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


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


def member_labels(cfgs) -> List[str]:
    """Short names telling the members apart on the terminal: the settings that differ."""
    flats = [flat_config(c) for c in cfgs]
    keys = [k for k in flats[0] if k != "OUTPUT_DIR" and len({repr(f.get(k)) for f in flats}) > 1]
    keys = [k for k in keys if k in ("TRAINER.NAME", "TRAINER.PTNL.LOSS")] or keys[:2]
    return [" ".join(str(f.get(k)) for k in keys) or osp.basename(f["OUTPUT_DIR"]) for f in flats]


def build_members(specs: Sequence, start: Callable) -> List[Member]:
    """Build each run of ``specs`` ((args, cfg) pairs) with ``start(args, cfg)`` (train.py's: seed,
    ``log.txt``, banner, trainer), one after another, sharing loaded CLIP models."""
    labels = member_labels([cfg for _, cfg in specs])
    members = []
    terminal = sys.stdout
    with shared_loads():
        for (args, cfg), label in zip(specs, labels):
            sys.stdout = _Prefixed(terminal, label)
            try:
                trainer = start(args, cfg)
                members.append(Member(cfg, trainer, sys.stdout, label))
            finally:
                sys.stdout = terminal
    check_same_stream(members)
    return members


def check_same_stream(members: List[Member]):
    """Every member trains on the first member's items, labels, transform and batch size."""
    first = members[0].trainer

    def stream(t):
        loader = t.train_loader_x
        return ([(d.impath, d.label) for d in t.train_items], repr(loader.dataset.transform), loader.batch_size,
                len(loader))

    ref = stream(first)
    for m in members[1:]:
        if stream(m.trainer) != ref:
            raise ConfigError("Grouped run {} does not train on the same items, labels, transform or batch size "
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
                print("Grouped with {} other run(s) on one data stream: {}".format(
                    len(members) - 1, ", ".join(o.cfg.OUTPUT_DIR for o in members if o is not m)))
        start = min(m.trainer.start_epoch for m in members)
        for epoch in range(start, leader.trainer.max_epoch):
            _train_epoch([m for m in members if m.trainer.start_epoch <= epoch], epoch, leader, once)
        for m in members:
            with m.scope() as t:
                t.after_train()
    except BaseException as e:  # each member's log ends as a lone run's would
        from ptnl.trainers.cli import exit_line, to_log
        for m in members:
            with m.scope() as t:
                to_log(exit_line(e, t, m.cfg))
        raise
    finally:
        for visual, _ in encoders.values():
            visual.__dict__.pop("forward", None)


def _train_epoch(active: List[Member], epoch: int, leader: Member, once):
    meters = {}
    for m in active:
        with m.scope() as t:
            t.epoch = epoch
            t.before_epoch()
            t.set_model_mode("train")
            t.num_batches = len(leader.trainer.train_loader_x)
            meters[id(m)] = (MetricMeter(), AverageMeter(), AverageMeter())
    with leader.scope():  # the loader draws nothing from the global generators (per_sample), but in its owner's scope
        batches = iter(leader.trainer.train_loader_x)
    end = time.time()
    for batch_idx, batch in enumerate(batches):
        data = time.time() - end
        batch = dict(batch, img=batch["img"].to(leader.trainer.device))  # moved once: every member gets this tensor
        for m in active:
            losses, batch_time, data_time = meters[id(m)]
            t0 = time.time()
            with m.scope() as t:
                t.batch_idx = batch_idx
                summary = t.forward_backward(batch)
                data_time.update(data)
                batch_time.update(data + time.time() - t0)
                losses.update(summary)
                if (batch_idx + 1) % t.cfg.TRAIN.PRINT_FREQ == 0 or t.num_batches < t.cfg.TRAIN.PRINT_FREQ:
                    print(batch_line(t, losses, batch_time, data_time))
                write_batch_scalars(t, losses)
        for e in once:
            e.clear()
        end = time.time()
    for m in active:
        with m.scope() as t:
            t.after_epoch()


def run_group(specs: Sequence, start: Callable, on_trainer: Callable = None) -> None:
    """Train the runs of ``specs`` ((args, cfg) pairs, none finished) grouped by ``stream_key``:
    a group of one trains as it would alone. ``start(args, cfg)`` builds one run as train.py
    does; ``on_trainer(trainer)`` is told each group's first trainer (for the exit handler)."""
    for idx in partition([cfg for _, cfg in specs]):
        if len(idx) == 1:
            args, cfg = specs[idx[0]]
            terminal = sys.stdout
            sys.stdout = _Prefixed(terminal)
            trainer = start(args, cfg)
            if on_trainer:
                on_trainer(trainer)
            trainer.train()
            sys.stdout = terminal
            continue
        members = build_members([specs[i] for i in idx], start)
        if on_trainer:
            on_trainer(members[0].trainer)
        train_group(members)
