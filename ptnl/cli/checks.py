"""Every check a run makes before it writes anything, so that ``--dry-run`` fails where a run would:
flags in their place, the required settings, the registries, the trainer's own ``check_cfg``, and
the folders it reads and writes. Each failure is one ``ConfigError`` / ``MissingFileError`` line."""
import difflib
import os
import os.path as osp
from typing import List

from ptnl import compat
from ptnl.data.base import PTNLDatasetBase
from ptnl.errors import ConfigError, MissingFileError

EXAMPLE = ("python train.py --trainer PTNL --root DATA --dataset-config-file configs/datasets/dtd.yaml "
           "--config-file configs/trainers/PTNL/rn50.yaml --seed 1 --output-dir out "
           "DATASET.NUM_SHOTS 16 DATASET.NOISE.RATE 0.5")
PLUGIN_HINT = "one of your own: register it in a file named by PTNL_PLUGINS=path/to/file.py (CONTRIBUTING.md)"


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
    """The trainer's own ``check_cfg`` (a classmethod: loss, noise protocol, precision, its options),
    which a run also calls when it builds the trainer: here it runs before anything is written and
    in dry runs."""
    cls = trainer_class(cfg.TRAINER.NAME)
    if is_ptnl_trainer(cls):
        cls.check_cfg(cfg)


def check_paths(cfg, args) -> None:
    """The folders a run reads and writes, before it writes anything: ``--root`` given and holding
    the dataset's folder, ``--output-dir`` a folder that can be made, ``--model-dir`` present."""
    if not cfg.DATASET.ROOT:
        raise ConfigError("Missing --root: the folder that holds the dataset folders (DATA, with DATA/dtd/ for "
                          "DTD). Example: {}".format(EXAMPLE))
    dataset = compat.DATASET_REGISTRY.get(cfg.DATASET.NAME)
    if isinstance(dataset, type) and issubclass(dataset, PTNLDatasetBase):  # they name the folder they need
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
