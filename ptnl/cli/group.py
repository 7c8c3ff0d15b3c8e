"""``python train.py --group FILE``: the runs of FILE (a JSON list of train.py argument lists, what
the grid scripts write) checked as each would be alone, then trained in groups that share a data
stream (``ptnl.trainers.group``: which runs may, and the lockstep training), each member with its
own prefixed terminal lines, ``log.txt`` and run folder; a group of one trains as it would alone."""
import gc
import json
import os.path as osp
import sys
from typing import List, Sequence

from ptnl.cli.exits import Current, exit_line, to_log
from ptnl.cli.parser import build_parser
from ptnl.cli.runner import prepare, removed_on_failure, start
from ptnl.clip.weights import shared_loads
from ptnl.errors import ConfigError
from ptnl.runs.files import release_run_dir
from ptnl.runs.identity import flat_config
from ptnl.trainers.group import Member, check_same_stream, partition, train_group
from ptnl.trainers.stacked import prepare_group


def main_group(args, current: Current) -> None:
    """``--group FILE``: the runs of FILE trained together where their data streams are the same,
    each as it would run alone; finished ones are checked and left out."""
    if args.opts or any(getattr(args, k) for k in ("eval_only", "no_train", "dry_run", "output_dir")):
        raise ConfigError("--group FILE takes no other arguments: each run's are in FILE")
    try:
        with open(args.group) as f:
            runs = json.load(f)
        assert isinstance(runs, list) and all(isinstance(r, list) and all(isinstance(a, str) for a in r)
                                             for r in runs)
    except (OSError, ValueError, AssertionError) as e:
        raise ConfigError("--group {}: expected a JSON list of train.py argument lists ({})".format(
            args.group, e)) from None
    parser, specs = build_parser(), []
    for argv in runs:
        member = parser.parse_args(argv)
        if member.group or member.eval_only or member.no_train or member.dry_run:
            raise ConfigError("--group {}: a grouped run trains (no --group, --eval-only, --no-train or "
                              "--dry-run): {}".format(args.group, " ".join(argv)))
        cfg = prepare(member, grouped=True, current=current)
        if cfg is not None:
            specs.append((member, cfg))
    run_group(specs, current)


def start_or_remove(args, cfg):
    """``start``, leaving nothing behind when it fails (a grouped run's start)."""
    with removed_on_failure(cfg.OUTPUT_DIR):
        return start(args, cfg)


def run_group(specs: Sequence, current: Current) -> None:
    """Train the runs of ``specs`` ((args, cfg) pairs, none finished) grouped by ``stream_key``:
    a group of one trains as it would alone. ``current`` is told each group's first trainer (for
    the exit handler); when a group stops, each member's log ends as a lone run's would. Each
    run's folder is free again (its lock given up) as soon as its group ends, and what its
    trainers held is let go before the next group starts (``let_go``)."""
    for idx in partition([cfg for _, cfg in specs]):
        if len(idx) == 1:
            train_alone(*specs[idx[0]], current)
        else:
            train_together([specs[i] for i in idx], current)
        current.trainer = None
        let_go()


def train_alone(args, cfg, current: Current) -> None:
    """One run of the process that shares no stream: as ``train.py`` would train it."""
    terminal = sys.stdout
    sys.stdout = Prefixed(terminal)
    trainer = current.trainer = start_or_remove(args, cfg)
    trainer.train()
    sys.stdout = terminal
    release_run_dir(cfg.OUTPUT_DIR)


def train_together(specs: Sequence, current: Current) -> None:
    """The runs of ``specs`` that share a data stream: built, then trained in lockstep."""
    members = build_members(specs)
    prepare_group([m.trainer for m in members])  # own labels; stacks of one prompt shape (trainers/stacked.py)
    current.trainer = members[0].trainer
    try:
        train_group(members)
    except BaseException as e:
        for m in members:
            with m.scope() as t:
                to_log(exit_line(e, t, m.cfg))
        raise
    for m in members:
        release_run_dir(m.cfg.OUTPUT_DIR)


def let_go() -> None:
    """After a group (or a lone run) of a process that trains more: collect what its trainers held
    in reference cycles now, not at some later collection: their models, decoded batches and the
    loader worker processes a per-sample stream keeps across epochs (each would otherwise stay
    alive, idle, while the process trains the next runs)."""
    gc.collect()


def build_members(specs: Sequence) -> List[Member]:
    """Start each run of ``specs`` ((args, cfg) pairs) as train.py does (seed, ``log.txt``, banner,
    trainer), one after another, sharing loaded CLIP models; then check they share one stream."""
    labels = member_labels([cfg for _, cfg in specs])
    members = []
    terminal = sys.stdout
    with shared_loads():
        for (args, cfg), label in zip(specs, labels):
            sys.stdout = Prefixed(terminal, label)
            try:
                trainer = start_or_remove(args, cfg)
                members.append(Member(cfg, trainer, sys.stdout, label))
            finally:
                sys.stdout = terminal
    check_same_stream(members)
    return members


def member_labels(cfgs) -> List[str]:
    """Short names telling the members apart on the terminal: the settings that differ."""
    flats = [flat_config(c) for c in cfgs]
    keys = [k for k in flats[0] if k != "OUTPUT_DIR" and len({repr(f.get(k)) for f in flats}) > 1]
    keys = [k for k in keys if k in ("TRAINER.NAME", "TRAINER.PTNL.LOSS")] or keys[:2]
    return [" ".join(str(f.get(k)) for k in keys) or osp.basename(f["OUTPUT_DIR"]) for f in flats]


class Prefixed:
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
