"""What ``train.py`` does around a run: check the command line and the config before anything is
written (the same checks as the trainer's ``check_cfg``, so ``--dry-run`` fails where a run would),
the compact terminal header (the full record goes to ``log.txt``), and one line for an error or a
Ctrl-C, on the terminal and at the end of the run's log.

Lines written to the log start with ``Error: `` (a failed run) or ``Interrupted at epoch`` (an
interrupted one): the run listing reads them.
"""
import contextlib
import difflib
import os
import os.path as osp
import sys
import threading
from typing import List

from ptnl import compat

EXAMPLE = ("python train.py --trainer PTNL --root DATA --dataset-config-file configs/datasets/dtd.yaml "
           "--config-file configs/trainers/PTNL/rn50.yaml --seed 1 --output-dir out "
           "DATASET.NUM_SHOTS 16 DATASET.NOISE.RATE 0.5")

# errors that are the user's to fix: one line, no traceback (PTNL_DEBUG=1 shows it)
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, IOError, ImportError)


class _Run:
    """What the exit handler needs to describe an interrupted run."""
    trainer = None
    cfg = None


RUN = _Run()


# ----------------------------------------------------------------------------- checks
def check_flag_order(opts: List[str]) -> None:
    """A ``--flag`` among the trailing ``KEY VALUE`` pairs: argparse hands it to yacs as a key,
    which reports only an odd-length list. Name the flag and say where it goes."""
    flags = [o for o in opts or () if o.startswith("--")]
    if flags:
        raise ValueError("{} {} after the KEY VALUE pairs: flags must come before them, e.g. "
                         "python train.py --trainer PTNL ... {} ... DATASET.NUM_SHOTS 16".format(
                             ", ".join(flags), "comes" if len(flags) == 1 else "come", " ".join(flags)))


def _unknown(what, name, known, where):
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
    return ("The requested {} is expected to belong to {}, but got [{}] (do you mean [{}]?); set it with {}"
            .format(what, known, name, close[0] if close else "", where))


def check_required(cfg) -> None:
    """The settings a run cannot start without, each named with the flag that sets it."""
    missing = []
    if not cfg.TRAINER.NAME:
        missing.append("--trainer (the trainer, e.g. --trainer PTNL; one of {})".format(
            ", ".join(compat.TRAINER_REGISTRY.registered_names())))
    if not cfg.DATASET.NAME:
        missing.append("--dataset-config-file (e.g. --dataset-config-file configs/datasets/dtd.yaml) or "
                       "DATASET.NAME (one of {})".format(", ".join(compat.DATASET_REGISTRY.registered_names())))
    if missing:
        raise ValueError("Missing {}. Example: {}".format(" and ".join(missing), EXAMPLE))
    trainers = compat.TRAINER_REGISTRY.registered_names()
    if cfg.TRAINER.NAME not in trainers:
        raise ValueError(_unknown("trainer", cfg.TRAINER.NAME, trainers, "--trainer"))
    datasets = compat.DATASET_REGISTRY.registered_names()
    if cfg.DATASET.NAME not in datasets:
        raise ValueError(_unknown("dataset", cfg.DATASET.NAME, datasets,
                                  "--dataset-config-file configs/datasets/<name>.yaml or DATASET.NAME"))


def check_trainer_cfg(cfg) -> None:
    """The trainer's own ``check_cfg`` (loss, noise protocol, precision, its options), which a run
    calls when it builds the trainer: here it runs before anything is written and in dry runs."""
    from ptnl.trainers.base import PTNLTrainerBase
    cls = compat.TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    if isinstance(cls, type) and issubclass(cls, PTNLTrainerBase):
        cls.check_cfg(object.__new__(cls), cfg)  # check_cfg reads only cfg and the class


def check_run(cfg) -> None:
    """Every check a run makes before its first write: required settings, registries, trainer."""
    check_required(cfg)
    check_trainer_cfg(cfg)


def config_warnings(args, cfg, repo: str = ".") -> List[str]:
    """Settings that run but are probably not what was meant (``repo``: where ``configs/`` is)."""
    out = []
    if not args.config_file:
        trainer = cfg.TRAINER.NAME or "<TRAINER>"
        folder = osp.join("configs", "trainers", trainer)
        found = osp.join(repo, folder)
        files = sorted(f for f in os.listdir(found) if f.endswith(".yaml")) if osp.isdir(found) else []
        suggestion = (osp.join(folder, "<backbone>.yaml") + " ({})".format(", ".join(files)) if files
                      else osp.join("configs", "trainers", "<TRAINER>", "<backbone>.yaml"))
        out.append("Warning: no --config-file: the optimiser is the toolbox default OPTIM.NAME {} (lr {}, {} epochs), "
                   "not the paper's; pass --config-file {}".format(cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH,
                                                                suggestion))
    return out


# ----------------------------------------------------------------------------- output
def log_file():
    """The open ``log.txt`` of this run (the file of the tee ``setup_logger`` put on stdout), or None."""
    f = getattr(sys.stdout, "file", None)
    if f is None or not hasattr(f, "write") or getattr(f, "closed", True):
        return None
    return f


def to_log(text: str) -> None:
    """Write ``text`` into this run's log only (not on the terminal)."""
    f = log_file()
    if f is not None:
        f.write(text if text.endswith("\n") else text + "\n")
        f.flush()


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
    lines += ["{}: {}".format(k, args.__dict__[k]) for k in sorted(args.__dict__)]
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


# ----------------------------------------------------------------------------- exit
def interrupted_message(trainer=None, cfg=None) -> str:
    epoch, total = 0, (cfg.OPTIM.MAX_EPOCH if cfg is not None else "?")
    if trainer is not None:
        total = getattr(trainer, "max_epoch", total)
        epoch = getattr(trainer, "epoch", -1) + 1
    return "Interrupted at epoch {}/{}: re-run the same command to resume.".format(epoch, total)


def _finish_line(line: str) -> None:
    """``line`` on the terminal (stderr) and at the end of the run's log, if there is one."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    to_log(line)
    print(line, file=sys.stderr)


def exit_line(e: BaseException, trainer=None, cfg=None) -> str:
    """The line that ends a run's log when ``e`` stops it: ``Interrupted at epoch`` for Ctrl-C,
    ``Error: <message>`` for a user error, ``Error: <type>: <message>`` for a crash."""
    if isinstance(e, KeyboardInterrupt):
        return interrupted_message(trainer, cfg)
    if isinstance(e, USER_ERRORS):
        return "Error: {}".format(e.args[0] if isinstance(e, KeyError) and e.args else e)
    return "Error: {}: {}".format(type(e).__name__, e)


def quick_exit(code: int = 0) -> None:
    """End a finished ``train.py`` without the interpreter's teardown (a second or more of freeing
    torch's modules one by one, on CPU): the exit handlers run (logging, worker processes), every
    open file is flushed, then the process ends with ``code``."""
    import atexit
    import gc
    import io
    atexit._run_exitfuncs()
    for obj in gc.get_objects():
        if not issubclass(type(obj), io.IOBase):  # type(), not isinstance: no __class__ lookups (warnings)
            continue
        try:
            if not obj.closed and obj.writable():
                obj.flush()
        except Exception:  # a stream that cannot flush (a closed pipe) is the teardown's to report
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


@contextlib.contextmanager
def exit_handler():
    """Around ``main``: a user error is one ``Error:`` line (exit 2), Ctrl-C one ``Interrupted at
    epoch`` line (exit 130); both, and any other crash's ``Error:`` line, end the run's log."""
    try:
        yield
    except KeyboardInterrupt as e:
        _finish_line(exit_line(e, RUN.trainer, RUN.cfg))
        sys.exit(130)
    except USER_ERRORS as e:
        if os.environ.get("PTNL_DEBUG"):
            to_log(exit_line(e))
            raise
        _finish_line(exit_line(e))
        print("(set PTNL_DEBUG=1 for the full traceback)", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # a crash: the traceback follows on stderr, the log says why it stopped
        to_log(exit_line(e))
        raise

