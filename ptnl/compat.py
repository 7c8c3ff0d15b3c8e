"""The one place that decides which engine runs: real Dassl when importable, else ``ptnl.engine``.

``PTNL_ENGINE=dassl`` or ``PTNL_ENGINE=builtin`` forces one. Every trainer and dataset of this
project imports the toolbox symbols from here, so they run unchanged under both. Two symbols are
always PTNL's own: ``build_lr_scheduler`` (Dassl's warm-up wrappers crash on current torch) and
``load_checkpoint`` (Dassl's refuses its own checkpoints on torch >= 2.6); both reproduce Dassl's
values and file formats. So are the helpers Dassl lacks, which PTNL's trainers use under either
engine: checkpoint I/O with the generators' states (``CheckpointIO``, ``checkpoint_to_load``,
``global_rng_state``), Dassl's progress line and per-batch scalars for batch loops of PTNL's own
(``batch_line``, ``write_batch_scalars``), ``macro_f1``.
"""
import importlib
import logging
import os

from ptnl.engine.optim import build_lr_scheduler  # noqa: F401  (always ours, see above)
from ptnl.engine.evaluation import macro_f1  # noqa: F401  (ours, see above)
from ptnl.engine.trainer import CheckpointIO, batch_line, checkpoint_to_load, write_batch_scalars  # noqa: F401  (ours)
from ptnl.engine.utils import CheckpointError, load_checkpoint, progress  # noqa: F401
from ptnl.engine.utils import global_rng_state, set_global_rng_state  # noqa: F401  (ours, see above)
from ptnl.engine.utils import load_pretrained_weights  # noqa: F401  (ours: weights_only=True, as load_checkpoint)
from ptnl.engine.utils import read_image as _read_image
from ptnl.errors import ConfigError, EngineError, PTNLError


class UnreadableImageError(PTNLError, OSError):
    """A dataset image that is missing or cannot be decoded (the message names the file)."""


def read_image(path):
    """The image at ``path`` as RGB (the engine's reader); a missing or undecodable file is a user
    error naming it, not a traceback."""
    try:
        return _read_image(path)
    except OSError as e:
        raise UnreadableImageError(str(e)) from e

_choice = os.environ.get("PTNL_ENGINE", "auto").strip().lower() or "auto"
if _choice not in ("auto", "dassl", "builtin"):
    raise ConfigError("PTNL_ENGINE must be 'dassl', 'builtin' or unset (auto), got {!r}".format(_choice))


def _import_dassl():
    try:
        return importlib.import_module("dassl"), None
    except ImportError as e:
        return None, e


_dassl, _dassl_error = (None, None) if _choice == "builtin" else _import_dassl()
if _choice == "dassl" and _dassl is None:
    raise EngineError("PTNL_ENGINE=dassl but Dassl cannot be imported ({}). Install Dassl.pytorch "
                      "or unset PTNL_ENGINE to use the built-in engine.".format(_dassl_error))

_logging_disabled = logging.root.manager.disable
if _dassl is not None:
    ENGINE = "dassl"
    ENGINE_VERSION = getattr(_dassl, "__version__", "unknown")
    from dassl.config import get_cfg_default  # noqa: F401
    from dassl.data import DataManager  # noqa: F401
    from dassl.data.data_manager import DatasetWrapper, build_data_loader  # noqa: F401
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset  # noqa: F401
    from dassl.data.transforms import build_transform  # noqa: F401
    from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer  # noqa: F401
    from dassl.evaluation import build_evaluator  # noqa: F401
    from dassl.metrics import compute_accuracy  # noqa: F401
    from dassl.optim import build_optimizer  # noqa: F401
    from dassl.utils import (AverageMeter, MetricMeter, check_isfile, collect_env_info, listdir_nohidden,  # noqa: F401
                             mkdir_if_missing, read_json, set_random_seed, setup_logger, write_json)
    # Dassl's wilds datasets call logging.disable(logging.WARNING) on import, which silenced every
    # PTNL log line (epoch diagnostics, partitions) under real Dassl; give logging back its level
    logging.disable(_logging_disabled)
else:
    from ptnl import engine as _engine
    ENGINE = "builtin"
    ENGINE_VERSION = _engine.__version__
    from ptnl.engine import (DATASET_REGISTRY, TRAINER_REGISTRY, AverageMeter, DataManager, MetricMeter,  # noqa: F401
                             DatasetBase, DatasetWrapper, Datum, TrainerX, build_data_loader,
                             build_dataset, build_evaluator, build_optimizer, build_trainer, build_transform,
                             check_isfile, collect_env_info, compute_accuracy, get_cfg_default,
                             listdir_nohidden, mkdir_if_missing,
                             read_json, set_random_seed, setup_logger, write_json)


def engine_banner():
    """The first log line of every run: which engine and version is in use."""
    if ENGINE == "dassl":
        return "PTNL engine: dassl (Dassl.pytorch {})".format(ENGINE_VERSION)
    return "PTNL engine: builtin (ptnl.engine, Dassl {} behaviour)".format(ENGINE_VERSION)
