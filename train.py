"""Train or evaluate one run, CoOp style: same flags as CoOp's train.py.

    python train.py --root DATA --trainer PTNL --dataset-config-file configs/datasets/dtd.yaml \
        --config-file configs/trainers/PTNL/rn50.yaml --seed 1 --output-dir out \
        DATASET.NUM_SHOTS 16 DATASET.NOISE.RATE 0.5 TRAINER.PTNL.LOSS gce

PTNL_PLUGINS (comma-separated modules or .py files) are imported first: a loss, noise type or
trainer registered there is available by name.
"""
import argparse
import contextlib
import difflib
import json
import os
import re
import shutil
import sys

import torch

from ptnl import compat
from ptnl.config import extend_cfg, merge_file, merge_opts
from ptnl.errors import ConfigError, MissingFileError
from ptnl.io import write_json_atomic
from ptnl.plugins import load_plugins
from ptnl.runs.files import EVALUATION_FILE, RunLocked, lock_run_dir
from ptnl.runs.identity import finished_run, flat_config
from ptnl.trainers import cli  # checks, settings from elsewhere, terminal header, exit lines
from ptnl.trainers.selection import apply_method_presets

REPO = os.path.dirname(os.path.abspath(__file__))  # configs/ is here


def print_args(args, cfg):
    print(cli.args_text(args, cfg))


def reset_cfg(cfg, args):
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None and args.seed >= 0:  # CoOp ignores --seed 0; we do not
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def load_registries():
    """PTNL_PLUGINS first (a trainer registered there must exist before the trainers are put into
    the engine's registry), then the datasets and the trainers."""
    load_plugins()  # modules or .py files adding losses, noise types, trainers, weights
    import datasets  # noqa: F401  (registers the datasets)
    import trainers.ptnl  # noqa: F401  (registers the trainers)


def setup_cfg(args):
    """The run's resolved config (frozen): defaults, dataset and trainer yaml, flags, the trailing
    KEY VALUE pairs, method presets; then, for CLIP trainers, CLIP's preprocessing when no
    --config-file names one and INPUT.SIZE from the backbone unless the command line sets it, and for
    --eval-only the model settings of the trained run (``cli.use_trained_settings``). What was taken
    from elsewhere than the command line is noted in ``args._notes`` (printed and logged)."""
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    for path in (args.dataset_config_file, args.config_file):
        if path:
            if not os.path.isfile(path):
                raise MissingFileError('Config file "{}" not found'.format(path))
            with _config_errors("config file " + path, cfg):
                merge_file(cfg, path)
    reset_cfg(cfg, args)
    with _config_errors("command-line options", cfg):
        merge_opts(cfg, args.opts)
    # JoAPR / NLPrompt: the release's per-dataset presets and implied settings, for the keys not set above
    apply_method_presets(cfg, (args.dataset_config_file, args.config_file), args.opts)
    cli.check_required(cfg)  # trainer and dataset first: the settings below depend on them
    given, notes = cli.command_line_keys(args), []
    trainer = cli.trainer_class(cfg.TRAINER.NAME)
    if cli.uses_clip(trainer):
        if not args.config_file:
            notes += cli.use_clip_input(cfg, given)
        if args.eval_only and args.model_dir:
            notes += cli.use_trained_settings(cfg, args.model_dir, given, default_settings())
        notes += cli.use_backbone_size(cfg, given if not (args.eval_only and args.model_dir) else
                                       dict(given, **{"INPUT.SIZE": "the trained run"}),
                                       need_weights=not getattr(args, "dry_run", False))
    elif args.eval_only and args.model_dir and trainer is not None:
        notes += cli.use_trained_settings(cfg, args.model_dir, given, default_settings())
    args._notes = notes
    cfg.freeze()
    return cfg


# yacs's words for a key the config does not have (merge_from_list / merge_from_file)
_UNKNOWN_KEY = re.compile(r"Non-existent (?:config )?key: ([\w.]+)")


@contextlib.contextmanager
def _config_errors(where, cfg):
    """yacs reports an unknown key or an odd option list with a bare AssertionError or KeyError, a
    wrong type with a ValueError: one ``ConfigError`` naming where, with the closest known keys."""
    try:
        yield
    except (AssertionError, KeyError, ValueError) as e:
        text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        m = _UNKNOWN_KEY.search(text)
        if m:
            key = m.group(1)
            close = difflib.get_close_matches(key, list(flat_config(cfg)), n=3, cutoff=0.75)
            hint = ("; did you mean {}?".format(" or ".join(close)) if close else
                    "; a plugin's key exists once its file is named in PTNL_PLUGINS")
            raise ConfigError("Unknown config key {} in {}{}".format(key, where, hint)) from None
        raise ConfigError("Bad config in {}: {}".format(where, text)) from e


def default_settings():
    """The flat default config (Dassl's and PTNL's keys): what a key missing from an older run's
    record stood at."""
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    return flat_config(cfg)


def main(args):
    if args.group:
        return main_group(args)
    cfg = prepare(args)
    if cfg is None:
        return
    with removed_on_failure(cfg.OUTPUT_DIR):  # a failure before training starts leaves nothing behind
        trainer = cli.RUN.trainer = start(args, cfg)
        if args.eval_only:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
            write_evaluation(trainer, trainer.test(), args, cfg)
            return
    if not args.no_train:
        trainer.train()


@contextlib.contextmanager
def removed_on_failure(out_dir):
    """When the block raises (an error, Ctrl-C), remove what this command made for ``out_dir``: the
    folder, if this command created it (a folder that was there, e.g. a run to resume, keeps its log
    and gets the ``Error:`` line), and the then empty folders above it that it created."""
    path = os.path.abspath(os.path.expanduser(out_dir))
    created, probe = [], path
    while not os.path.exists(probe):
        created.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        yield
    except BaseException as e:
        if created and not isinstance(e, RunLocked):  # locked: the folder is another process's
            shutil.rmtree(path, ignore_errors=True)
            for folder in created[1:]:
                try:
                    os.rmdir(folder)  # only when empty: another run may have started beside this one
                except OSError:
                    break
        raise


def write_evaluation(trainer, accuracy, args, cfg):
    """``evaluation.json`` in the output folder of ``--eval-only``: the test numbers, where the model
    came from and the settings; it marks the folder as an evaluation (``ptnl.runs.read.run_status``),
    not a run that is incomplete."""
    record = dict(getattr(trainer, "last_test", None) or {})
    if "accuracy" not in record and isinstance(accuracy, (int, float)):
        record["accuracy"] = float(accuracy)
    record.update(kind="evaluation", model_dir=os.path.abspath(args.model_dir) if args.model_dir else None,
                  load_epoch=args.load_epoch, trainer=cfg.TRAINER.NAME, dataset=cfg.DATASET.NAME,
                  backbone=cfg.MODEL.BACKBONE.NAME, seed=cfg.SEED,
                  engine={"name": compat.ENGINE, "version": compat.ENGINE_VERSION}, config=flat_config(cfg))
    write_json_atomic(os.path.join(cfg.OUTPUT_DIR, EVALUATION_FILE), record)


def prepare(args, grouped=False):
    """The run's config after every check that comes before a write; None for a dry run (its
    config printed, then "checks passed"). A finished run exits here: 0 for the same settings, 3 for
    others (``grouped``: the same settings return None, the group goes on without it), before the
    folders are checked (a finished run needs no data folder)."""
    cli.check_flag_order(args.opts)  # before yacs reads a flag as a key
    cfg = setup_cfg(args)  # also the backbone and its input size
    cli.RUN.cfg = cfg
    cli.check_run(cfg)  # required flags and the trainer's checks
    if args.dry_run:
        cli.check_paths(cfg, args)  # --root, the dataset folder, --output-dir, --model-dir: as the run would
        print(cfg)
        for line in cli.config_warnings(args, cfg, REPO):
            print(line)
        print("checks passed")
        return None
    if not args.eval_only:  # an evaluation trains nothing: a finished run in its folder is not its concern
        code, message = finished_run(cfg, defaults=default_settings())  # results.json there: same 0, other 3
        if code is not None:
            print(message, file=sys.stderr if code else sys.stdout)
            if code == 0 and grouped:
                return None
            sys.exit(code)
    cli.check_paths(cfg, args)  # the folders the run reads and writes: nothing is written before
    return cfg


def start(args, cfg):
    """Seed, ``log.txt`` (stdout is then its tee), the header and the full record, the trainer
    (the environment report is made while it is built and recorded after it)."""
    lock_run_dir(cfg.OUTPUT_DIR)  # one process per run folder: a second one stops here (ptnl.runs.files)
    cli.start_env_info()
    if cfg.SEED >= 0:
        print("Setting fixed seed: {}".format(cfg.SEED))
        compat.set_random_seed(cfg.SEED)
    compat.setup_logger(cfg.OUTPUT_DIR)
    print(compat.engine_banner())
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print(cli.header(cfg))
    for line in cli.config_warnings(args, cfg, REPO):
        print(line)
    cli.record(cli.args_text(args, cfg), args.verbose)
    trainer = compat.build_trainer(cfg)
    cli.record("Collecting env info ...\n** System info **\n{}\n".format(cli.env_info()), args.verbose)
    return trainer


def main_group(args):
    """``--group FILE``: the runs of FILE (a JSON list of train.py argument lists, without
    ``python train.py``) trained together where their data streams are the same
    (``ptnl.trainers.group``), each as it would run alone; finished ones are checked and left out."""
    from ptnl.trainers.group import run_group
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
        cfg = prepare(member, grouped=True)
        if cfg is not None:
            specs.append((member, cfg))
    run_group(specs, start_or_remove, on_trainer=lambda t: setattr(cli.RUN, "trainer", t))


def start_or_remove(args, cfg):
    """``start``, leaving nothing behind when it fails (a grouped run's start)."""
    with removed_on_failure(cfg.OUTPUT_DIR):
        return start(args, cfg)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=-1, help="only non-negative value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the command line and config as a run would, print the resolved config and exit")
    parser.add_argument("--verbose", action="store_true",
                        help="print the arguments, the full config and the environment on the terminal too "
                             "(they are always in log.txt)")
    parser.add_argument("--group", type=str, default="", metavar="FILE",
                        help="train the runs listed in FILE (JSON: a list of train.py argument lists) in one "
                             "process, one data stream for the runs that share it (what the grid scripts do)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line")
    return parser


if __name__ == "__main__":
    args = build_parser().parse_args()
    with cli.exit_handler():  # user errors: one "Error:" line; Ctrl-C: one "Interrupted at epoch" line
        load_registries()
        main(args)
    cli.quick_exit(0)  # finished: everything is written; skip the interpreter's slow teardown
else:
    load_registries()  # importers (tests, scripts/ptnl/check_settings.py) see the registries a run sees
