"""One run of ``train.py``: every check before the first write (``prepare``; ``--dry-run`` stops
there), then the run folder's lock, seed, ``log.txt``, the compact terminal header (the full record
goes to the log) and the trainer (``start``); then training, or for ``--eval-only`` the test and
``evaluation.json``. A failure before training starts leaves nothing behind."""
import contextlib
import os
import shutil
import sys
import threading

import torch

from ptnl import compat
from ptnl.cli.checks import check_flag_order, check_paths, check_run
from ptnl.cli.exits import Current, to_log
from ptnl.cli.setup import config_warnings, default_settings, setup_cfg
from ptnl.io import write_json_atomic
from ptnl.runs.files import EVALUATION_FILE, RunLocked, lock_run_dir
from ptnl.runs.identity import finished_run, flat_config


def run_one(args, current: Current) -> None:
    """``python train.py ...`` without ``--group``: train, or evaluate (``--eval-only``), or only
    build (``--no-train``) one run."""
    cfg = prepare(args, current=current)
    if cfg is None:
        return
    with removed_on_failure(cfg.OUTPUT_DIR):  # a failure before training starts leaves nothing behind
        trainer = current.trainer = start(args, cfg)
        if args.eval_only:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
            write_evaluation(trainer, trainer.test(), args, cfg)
            return
    if not args.no_train:
        trainer.train()


def prepare(args, grouped: bool = False, current: Current = None):
    """The run's config after every check that comes before a write; None for a dry run (its
    config printed, then "checks passed"). A finished run exits here: 0 for the same settings, 3 for
    others (``grouped``: the same settings return None, the group goes on without it), before the
    folders are checked (a finished run needs no data folder). ``current`` is told the config."""
    check_flag_order(args.opts)  # before yacs reads a flag as a key
    cfg = setup_cfg(args)  # also the backbone and its input size
    if current is not None:
        current.cfg = cfg
    check_run(cfg)  # required flags and the trainer's checks
    if args.dry_run:
        check_paths(cfg, args)  # --root, the dataset folder, --output-dir, --model-dir: as the run would
        print(cfg)
        for line in config_warnings(args, cfg):
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
    check_paths(cfg, args)  # the folders the run reads and writes: nothing is written before
    return cfg


def start(args, cfg):
    """Seed, ``log.txt`` (stdout is then its tee), the header and the full record, the trainer
    (the environment report is made while it is built and recorded after it)."""
    lock_run_dir(cfg.OUTPUT_DIR)  # one process per run folder: a second one stops here (ptnl.runs.files)
    start_env_info()
    if cfg.SEED >= 0:
        print("Setting fixed seed: {}".format(cfg.SEED))
        compat.set_random_seed(cfg.SEED)
    compat.setup_logger(cfg.OUTPUT_DIR)
    print(compat.engine_banner())
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print(header(cfg))
    for line in config_warnings(args, cfg):
        print(line)
    record(args_text(args, cfg), args.verbose)
    trainer = compat.build_trainer(cfg)
    record("Collecting env info ...\n** System info **\n{}\n".format(env_info()), args.verbose)
    return trainer


@contextlib.contextmanager
def removed_on_failure(out_dir: str):
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


def write_evaluation(trainer, accuracy, args, cfg) -> None:
    """``evaluation.json`` in the output folder of ``--eval-only``: the test numbers, where the model
    came from and the settings; it marks the folder as an evaluation (``ptnl.runs.read.run_status``),
    not a run that is incomplete."""
    evaluation = dict(getattr(trainer, "last_test", None) or {})
    if "accuracy" not in evaluation and isinstance(accuracy, (int, float)):
        evaluation["accuracy"] = float(accuracy)
    evaluation.update(kind="evaluation", model_dir=os.path.abspath(args.model_dir) if args.model_dir else None,
                      load_epoch=args.load_epoch, trainer=cfg.TRAINER.NAME, dataset=cfg.DATASET.NAME,
                      backbone=cfg.MODEL.BACKBONE.NAME, seed=cfg.SEED,
                      engine={"name": compat.ENGINE, "version": compat.ENGINE_VERSION}, config=flat_config(cfg))
    write_json_atomic(os.path.join(cfg.OUTPUT_DIR, EVALUATION_FILE), evaluation)


# ----------------------------------------------------------------------------- what the terminal and log.txt get
def header(cfg) -> str:
    """The run in two lines: what is trained on what, and where it goes."""
    noise = cfg.DATASET.NOISE
    noise_s = "none" if noise.RATE == 0 else "{} {} {}".format(noise.TYPE, noise.MODE, noise.RATE)
    ptnl = cfg.TRAINER.get("PTNL")
    loss = ptnl.LOSS if ptnl is not None else "-"
    return ("Run: {} on {} | backbone {} | {} shots | noise {} | loss {} | seed {}\n"
            "Output: {} (full config and environment in its log.txt; --verbose prints them here)").format(
        cfg.TRAINER.NAME, cfg.DATASET.NAME, cfg.MODEL.BACKBONE.NAME, cfg.DATASET.NUM_SHOTS, noise_s, loss,
        cfg.SEED, cfg.OUTPUT_DIR)


def args_text(args, cfg) -> str:
    """Dassl's ``print_args`` block: every argument, then the whole config."""
    lines = ["***************", "** Arguments **", "***************"]
    lines += ["{}: {}".format(k, args.__dict__[k]) for k in sorted(args.__dict__) if not k.startswith("_")]
    lines += ["************", "** Config **", "************", str(cfg)]
    return "\n".join(lines)


_ENV_INFO = {}


def start_env_info() -> None:
    """Begin the environment report in a thread (it waits on pip and the GPU driver, about a
    second) so that it overlaps building the trainer; ``env_info`` collects it."""
    if "thread" not in _ENV_INFO:
        def collect():
            try:
                _ENV_INFO["text"] = compat.collect_env_info()
            except Exception as e:  # a report that cannot be made must not stop the run
                _ENV_INFO["text"] = "(environment report failed: {})".format(e)
        _ENV_INFO["thread"] = threading.Thread(target=collect, name="ptnl-env-info", daemon=True)
        _ENV_INFO["thread"].start()


def env_info() -> str:
    """The toolbox's environment report, once per process."""
    start_env_info()
    _ENV_INFO["thread"].join()
    return _ENV_INFO["text"]


def record(text: str, verbose: bool) -> None:
    """The full record: on the terminal and in the log with ``--verbose``, else in the log only."""
    if verbose:
        print(text)
    else:
        sys.stdout.flush()
        to_log(text)
