"""What ``train.py`` does around a run: the settings it takes from elsewhere than the command line
(CLIP's preprocessing and input size; an evaluation's model settings from its trained run), every
check before anything is written (the trainer's ``check_cfg``, the backbone, the folders), so that
``--dry-run`` fails where a run would, the compact terminal header (the full record goes to
``log.txt``), and one line for a user error (``ptnl.errors.PTNLError``) or a Ctrl-C, on the terminal
and at the end of the run's log; any other exception keeps its traceback.

Lines written to the log start with ``Error: `` (a failed run) or ``Interrupted at epoch`` (an
interrupted one): the run listing reads them.
"""
import contextlib
import difflib
import json
import os
import os.path as osp
import sys
import threading
from typing import Dict, List, Optional

from ptnl import compat
from ptnl.clip.preprocess import CLIP_INPUT, check_input_size, input_resolution
from ptnl.clip.weights import PRETRAINED, downloads_off, resolve_weights, same_weights
from ptnl.errors import ConfigError, MissingFileError, PTNLError
from ptnl.runs.files import RESULTS_FILE, newest_checkpoint
from ptnl.runs.identity import IMPLIED_WHEN_ABSENT, flat_config
from ptnl.runs.logs import config_dump, log_files

EXAMPLE = ("python train.py --trainer PTNL --root DATA --dataset-config-file configs/datasets/dtd.yaml "
           "--config-file configs/trainers/PTNL/rn50.yaml --seed 1 --output-dir out "
           "DATASET.NUM_SHOTS 16 DATASET.NOISE.RATE 0.5")
# what train.py and scripts/ptnl/check_settings.py print as one line: the user-error classes only
USER_ERRORS = (PTNLError,)
PLUGIN_HINT = "one of your own: register it in a file named by PTNL_PLUGINS=path/to/file.py (CONTRIBUTING.md)"

# The settings that shape the model and its input (a key, or a prefix ending in "."): an evaluation
# (--eval-only) takes them from the trained run. A trainer adds its own with a MODEL_KEYS attribute.
MODEL_KEYS = ("TRAINER.NAME", "MODEL.", "INPUT.", "TRAINER.PTNL.N_CTX", "TRAINER.PTNL.CSC", "TRAINER.PTNL.CTX_INIT",
              "TRAINER.PTNL.CTX_INIT_MODE", "TRAINER.PTNL.CLASS_TOKEN_POSITION", "TRAINER.PTNL.PREC",
              "TRAINER.IMAGENET_FT.ARCH")
# The flags that set a config key (the rest of the command line's keys are the trailing KEY VALUE pairs).
FLAG_KEYS = {"trainer": "TRAINER.NAME", "backbone": "MODEL.BACKBONE.NAME", "head": "MODEL.HEAD.NAME",
             "transforms": "INPUT.TRANSFORMS"}


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
        raise ConfigError("{} {} after the KEY VALUE pairs: flags must come before them, e.g. "
                         "python train.py --trainer PTNL ... {} ... DATASET.NUM_SHOTS 16".format(
                             ", ".join(flags), "comes" if len(flags) == 1 else "come", " ".join(flags)))


def _unknown(what, name, known, where, hint=""):
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
    return ("The requested {} is expected to belong to {}, but got [{}] (do you mean [{}]?); set it with {}{}"
            .format(what, known, name, close[0] if close else "", where, "; " + hint if hint else ""))


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
        raise ConfigError("Missing {}. Example: {}".format(" and ".join(missing), EXAMPLE))
    trainers = compat.TRAINER_REGISTRY.registered_names()
    if cfg.TRAINER.NAME not in trainers:
        raise ConfigError(_unknown("trainer", cfg.TRAINER.NAME, trainers, "--trainer", PLUGIN_HINT))
    datasets = compat.DATASET_REGISTRY.registered_names()
    if cfg.DATASET.NAME not in datasets:
        raise ConfigError(_unknown("dataset", cfg.DATASET.NAME, datasets,
                                   "--dataset-config-file configs/datasets/<name>.yaml or DATASET.NAME"))


def trainer_class(name: str):
    """The registered trainer class of ``name``, or None (not registered)."""
    try:
        return compat.TRAINER_REGISTRY.get(name) if name in compat.TRAINER_REGISTRY.registered_names() else None
    except Exception:  # a registry that raises on lookups it cannot answer
        return None


def is_ptnl_trainer(cls) -> bool:
    from ptnl.trainers.base import PTNLTrainerBase
    return isinstance(cls, type) and issubclass(cls, PTNLTrainerBase)


def uses_clip(cls) -> bool:
    """Whether the trainer ``cls`` runs a CLIP image encoder (PTNL's trainers but ImageNetFT, which
    declares ``USES_CLIP = False``): its input is CLIP's preprocessing at the backbone's size."""
    return is_ptnl_trainer(cls) and getattr(cls, "USES_CLIP", True)


def check_trainer_cfg(cfg) -> None:
    """The trainer's own ``check_cfg`` (loss, noise protocol, precision, its options), which a run
    calls when it builds the trainer: here it runs before anything is written and in dry runs."""
    cls = trainer_class(cfg.TRAINER.NAME)
    if is_ptnl_trainer(cls):
        cls.check_cfg(object.__new__(cls), cfg)  # check_cfg reads only cfg and the class


def check_paths(cfg, args) -> None:
    """The folders a run reads and writes, before it writes anything: ``--root`` given and holding
    the dataset's folder, ``--output-dir`` a folder that can be made, ``--model-dir`` present."""
    if not cfg.DATASET.ROOT:
        raise ConfigError("Missing --root: the folder that holds the dataset folders (DATA, with DATA/dtd/ for "
                          "DTD). Example: {}".format(EXAMPLE))
    dataset = compat.DATASET_REGISTRY.get(cfg.DATASET.NAME)
    if hasattr(dataset, "check_folder"):  # PTNL's datasets name the folder they need under the root
        dataset.check_folder(cfg)
    elif not osp.isdir(osp.expanduser(cfg.DATASET.ROOT)):
        raise MissingFileError('--root "{}" is not a folder (DATASET.ROOT)'.format(cfg.DATASET.ROOT))
    check_output_dir(cfg.OUTPUT_DIR)
    if getattr(args, "eval_only", False) and args.model_dir and not osp.isdir(args.model_dir):
        raise MissingFileError('--model-dir "{}" is not a folder: name the trained run\'s output folder'.format(
            args.model_dir))


def check_output_dir(out_dir: str) -> None:
    """``out_dir`` is a folder, or can be made: no part of it is a file and the nearest existing
    folder above it can be written."""
    path = osp.abspath(osp.expanduser(out_dir))
    probe = path
    while not osp.exists(probe):
        parent = osp.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if osp.exists(probe) and not osp.isdir(probe):
        raise ConfigError('--output-dir "{}": "{}" is a file, not a folder; name a folder (OUTPUT_DIR)'.format(
            out_dir, probe))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError('--output-dir "{}": cannot write in "{}" (permission denied); choose a folder you can '
                          "write to".format(out_dir, probe))


def check_run(cfg, args=None) -> None:
    """Every check a run makes before its first write: required settings, registries, the trainer's
    checks, and (given the command line ``args``) the folders."""
    check_required(cfg)
    check_trainer_cfg(cfg)
    if args is not None:
        check_paths(cfg, args)


# ----------------------------------------------------------------------------- settings from elsewhere
def command_line_keys(args) -> Dict[str, str]:
    """{config key: where} for the keys the command line sets: the trailing KEY VALUE pairs and the
    flags that name a key (``--backbone`` ...). Config files are not the command line: the settings
    below override what they say."""
    given = {flag_key: "--" + flag for flag, flag_key in FLAG_KEYS.items() if getattr(args, flag, None)}
    opts = list(args.opts or ())
    given.update({str(k): "the command line" for k in opts[0::2]})
    return given


def _get(cfg, key):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _set(cfg, key, value) -> None:
    """Set a flat ``key`` of an unfrozen config, keeping the type of a tuple-valued key."""
    parts = key.split(".")
    node = _get(cfg, ".".join(parts[:-1])) if len(parts) > 1 else cfg
    node[parts[-1]] = tuple(value) if isinstance(node[parts[-1]], tuple) and isinstance(value, list) else value


def _same(a, b) -> bool:
    return json.loads(json.dumps(a, default=str)) == json.loads(json.dumps(b, default=str))


def use_clip_input(cfg, given: Dict[str, str]) -> List[str]:
    """Without ``--config-file``: CLIP's preprocessing (``ptnl.clip.preprocess.CLIP_INPUT``) for the
    INPUT keys the command line does not set, instead of the toolbox's ImageNet defaults (no
    normalisation). Returns a note for the log."""
    changed = [k for k, v in CLIP_INPUT.items() if "INPUT." + k not in given and not _same(cfg.INPUT[k], v)]
    for k in changed:
        _set(cfg, "INPUT." + k, list(CLIP_INPUT[k]) if isinstance(CLIP_INPUT[k], (list, tuple)) else CLIP_INPUT[k])
    return ["Note: no --config-file: CLIP's preprocessing ({})".format(
        ", ".join("INPUT.{} {}".format(k, cfg.INPUT[k]) for k in changed))] if changed else []


def use_backbone_size(cfg, given: Dict[str, str], need_weights: bool = True) -> List[str]:
    """INPUT.SIZE from the backbone (``input_resolution``: OpenAI names by name, local names and files
    by their weights) unless the command line sets it, which must then match. Also the backbone
    check: an unknown name or a missing file stops here, and (``need_weights``: a run, not a dry
    run) an OpenAI name whose weights are absent while downloads are off, before any size mismatch.
    Returns a note when the size changed."""
    name = cfg.MODEL.BACKBONE.NAME
    if not name:
        raise ConfigError("Missing MODEL.BACKBONE.NAME: a CLIP name (RN50, ViT-B/32, ...), pocket or a weights file; "
                          "--config-file configs/trainers/{}/rn50.yaml sets RN50. Example: {}".format(
                              cfg.TRAINER.NAME, EXAMPLE))
    if need_weights and name in PRETRAINED and downloads_off():
        resolve_weights(name)  # offline and not cached: the first thing to fix
    res = input_resolution(name)
    if "INPUT.SIZE" in given:
        check_input_size(cfg.INPUT.SIZE, res, name)
        return []
    if tuple(cfg.INPUT.SIZE) == (res, res):
        return []
    old = tuple(cfg.INPUT.SIZE)
    cfg.INPUT.SIZE = (res, res)
    return ["Note: INPUT.SIZE ({0}, {0}): the input size of backbone {1} (the config said {2}; set INPUT.SIZE "
            "on the command line to choose)".format(res, name, old)]


def stored_settings(model_dir: str) -> Optional[Dict]:
    """The flat config a trained run recorded: ``results.json``'s ``config``, else the config its
    ``log.txt`` printed (a run that did not finish, or one made by CoOp); None when neither exists."""
    path = osp.join(model_dir, RESULTS_FILE)
    if osp.isfile(path):
        try:
            with open(path) as f:
                stored = json.load(f).get("config")
        except (OSError, ValueError, AttributeError) as e:
            raise ConfigError('{} is unreadable ({}): cannot tell the settings the model was trained '
                              "with".format(path, e)) from e
        if isinstance(stored, dict):
            return stored
    for log in log_files(model_dir) if osp.isdir(model_dir) else ():
        with open(log, errors="replace") as f:
            conf = config_dump(f.readlines())
        if conf:
            return conf
    return None


def model_key(key: str, extra=()) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in MODEL_KEYS + tuple(extra))


def use_trained_settings(cfg, model_dir: str, given: Dict[str, str], defaults: Dict) -> List[str]:
    """An evaluation's model and input settings (``MODEL_KEYS``) from the trained run in ``model_dir``:
    a value the command line sets that differs from the stored one is refused (``ConfigError``
    naming each key, stored and given value); config files and defaults give way silently (the note
    returned lists what changed). Keys the run predates take ``IMPLIED_WHEN_ABSENT`` or ``defaults``."""
    stored = stored_settings(model_dir)
    if stored is None:
        return ["Warning: {} holds no results.json or log.txt with the trained run's settings; the evaluation "
                "uses the settings given here, which must be the training's".format(model_dir)]
    cls = trainer_class(stored.get("TRAINER.NAME", cfg.TRAINER.NAME))
    extra = tuple(getattr(cls, "MODEL_KEYS", ()))
    conflicts, changed = [], []
    for key, current in flat_config(cfg).items():
        if not model_key(key, extra):
            continue
        if key in stored:
            value = stored[key]
        elif key in IMPLIED_WHEN_ABSENT:
            value = IMPLIED_WHEN_ABSENT[key]
        elif key in defaults:
            value = defaults[key]
        else:
            continue
        if _same(current, value):
            continue
        if key == "MODEL.BACKBONE.NAME" and same_weights(value, current):
            continue  # the trained run's weights file, at another place: the given path is where it is now
        if key in given:
            conflicts.append("{} (trained {}, given {} on {})".format(key, json.dumps(value), json.dumps(current),
                                                                     given[key]))
        else:
            _set(cfg, key, value)
            changed.append("{} {}".format(key, json.dumps(value)))
    if conflicts:
        raise ConfigError("--eval-only: the model in {} was trained with other settings than given: {}; drop these "
                          "options (the evaluation takes them from the trained run)".format(
                              model_dir, "; ".join(conflicts)))
    return ["Note: settings of the trained run in {}: {}".format(model_dir, ", ".join(changed))] if changed else []


def config_warnings(args, cfg, repo: str = ".") -> List[str]:
    """Settings that run but are probably not what was meant (``repo``: where ``configs/`` is), after
    the notes on settings taken from elsewhere than the command line."""
    out = list(getattr(args, "_notes", ()))
    if not args.config_file and not args.eval_only:
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
        with contextlib.suppress(OSError, ValueError):  # a full disk: the terminal still has the line
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


# ----------------------------------------------------------------------------- exit
def interrupted_message(trainer=None, cfg=None) -> str:
    """The epoch in progress, and the newest checkpoint's epoch, where a re-run resumes (the number
    main.sh's "Resuming: ... (from epoch E)" names)."""
    epoch, total = 0, (cfg.OPTIM.MAX_EPOCH if cfg is not None else "?")
    if trainer is not None:
        total = getattr(trainer, "max_epoch", total)
        epoch = getattr(trainer, "epoch", -1) + 1
    out_dir = getattr(trainer, "output_dir", None) or (cfg.OUTPUT_DIR if cfg is not None else None)
    last = newest_checkpoint(out_dir) if isinstance(out_dir, str) and osp.isdir(out_dir) else None
    then = ("resume from epoch {} (the newest checkpoint)".format(last) if last is not None
            else "start again (no checkpoint was written yet)")
    return "Interrupted at epoch {}/{}: re-run the same command to {}.".format(epoch, total, then)


def _finish_line(line: str) -> None:
    """``line`` on the terminal (stderr) and at the end of the run's log, if there is one."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    to_log(line)
    print(line, file=sys.stderr)


def exit_line(e: BaseException, trainer=None, cfg=None) -> str:
    """The line that ends a run's log when ``e`` stops it: ``Interrupted at epoch`` for Ctrl-C,
    ``Error: <message>`` for a user error, ``Error: <type>: <message>`` for a crash."""
    if isinstance(e, KeyboardInterrupt):  # a stop signal's (ptnl.trainers.preemption) says which one
        return str(e.args[0]) if e.args else interrupted_message(trainer, cfg)
    if isinstance(e, PTNLError):
        return "Error: {}".format(e)
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
    """Around ``main``: a user error (``PTNLError``) is one ``Error:`` line (exit 2), Ctrl-C one
    ``Interrupted at epoch`` line (exit 130); both, and any other crash's ``Error:`` line, end the
    run's log. Anything else is a bug and keeps its traceback. SIGTERM / SIGUSR1 stop the run at a
    safe point (``ptnl.trainers.preemption``, exit 128 + signal); a diverged run exits 4."""
    from ptnl.trainers import preemption
    preemption.install()
    try:
        yield
    except KeyboardInterrupt as e:
        _finish_line(exit_line(e, RUN.trainer, RUN.cfg))
        sys.exit(getattr(e, "exit_code", 130))
    except PTNLError as e:
        if os.environ.get("PTNL_DEBUG"):
            to_log(exit_line(e))
            raise
        _finish_line(exit_line(e))
        print("(set PTNL_DEBUG=1 for the full traceback)", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except Exception as e:  # a crash: the traceback follows on stderr, the log says why it stopped
        to_log(exit_line(e))
        raise

