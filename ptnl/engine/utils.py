"""Dassl 0.6.3's ``dassl.utils`` / ``dassl.metrics`` subset: registry, files, logging, seeding,
meters, accuracy and checkpoint helpers, with Dassl's messages and file formats."""
import collections
import difflib
import errno
import hashlib
import json
import os
import os.path as osp
import pickle
import random
import re
import sys
import time
import warnings
from collections import OrderedDict, defaultdict

import numpy as np
import torch
from PIL import Image


# ----------------------------------------------------------------------------- registry
def get_most_similar_str_to_a_from_b(a, b):
    """The candidate in ``b`` most similar to ``a`` (ties: the later one, as Dassl)."""
    highest, best = 0, b[0] if b else ""
    for candidate in b:
        ratio = difflib.SequenceMatcher(None, a, candidate).ratio()
        if ratio >= highest:
            highest, best = ratio, candidate
    return best


def check_availability(requested, available):
    if requested not in available:
        closest = get_most_similar_str_to_a_from_b(requested, available)
        raise ValueError(
            "The requested one is expected to belong to {}, but got [{}] "
            "(do you mean [{}]?)".format(available, requested, closest)
        )


class Registry:
    """Name -> object map filled by the ``@REG.register()`` decorator."""

    def __init__(self, name):
        self._name = name
        self._obj_map = dict()

    def _do_register(self, name, obj, force=False):
        if name in self._obj_map and not force:
            raise KeyError(
                'An object named "{}" was already registered in "{}" registry'.format(name, self._name)
            )
        self._obj_map[name] = obj

    def register(self, obj=None, force=False):
        if obj is None:
            def wrapper(fn_or_class):
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class
            return wrapper
        self._do_register(obj.__name__, obj, force=force)

    def get(self, name):
        if name not in self._obj_map:
            raise KeyError('Object name "{}" does not exist in "{}" registry'.format(name, self._name))
        return self._obj_map[name]

    def registered_names(self):
        return list(self._obj_map.keys())


# ----------------------------------------------------------------------------- files
def mkdir_if_missing(dirname):
    if not osp.exists(dirname):
        try:
            os.makedirs(dirname)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


def check_isfile(fpath):
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn('No file found at "{}"'.format(fpath))
    return isfile


def read_json(fpath):
    with open(fpath, "r") as f:
        return json.load(f)


def write_json(obj, fpath):
    mkdir_if_missing(osp.dirname(fpath) or ".")
    atomic_save(fpath, lambda f: json.dump(obj, f, indent=4, separators=(",", ": ")))


def atomic_save(path, write_fn, mode="w"):
    """The engine's own atomic write (it imports nothing else of PTNL): ``write_fn`` fills
    ``.tmp-<name>-<pid>`` in the same folder (created as ``open()`` creates files: the umask's
    permissions), flushed to disk, which is then renamed to ``path``. PTNL's trainers pass
    ``ptnl.io.atomic_write`` instead (``CheckpointIO.write_file``), which also reports a full disk."""
    tmp = osp.join(osp.dirname(path) or ".", ".tmp-{}-{}".format(osp.basename(path), os.getpid()))
    try:
        with open(tmp, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def read_image(path):
    """Open an image as RGB; a missing or undecodable file raises an error naming it."""
    try:
        return Image.open(path).convert("RGB")
    except Exception as e:  # PIL raises many types; the file name is what the user needs
        raise IOError('Cannot read image "{}": {}'.format(path, e)) from e


def listdir_nohidden(path, sort=False):
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def tolist_if_not(x):
    if not isinstance(x, list):
        x = [x]
    return x


def collect_env_info():
    from torch.utils.collect_env import get_pretty_env_info
    import PIL
    env_str = get_pretty_env_info()
    env_str += "\n        Pillow ({})".format(PIL.__version__)
    return env_str


# ----------------------------------------------------------------------------- logging, seeds
class Logger:
    """Copies ``sys.stdout`` into a file (Dassl's ``Logger``)."""

    def __init__(self, fpath=None):
        self.console = sys.stdout
        self.file = None
        if fpath is not None:
            mkdir_if_missing(osp.dirname(fpath) or ".")
            self.file = open(fpath, "w")

    def __del__(self):
        self.close()

    def write(self, msg):
        self.console.write(msg)
        if self.file is not None:
            self._to_file(lambda: self.file.write(msg))

    def flush(self):
        self.console.flush()
        if self.file is not None:
            self._to_file(lambda: (self.file.flush(), os.fsync(self.file.fileno())))

    def _to_file(self, op):
        """Write to the log file; when that fails (a full disk) say so once on the console and go
        on there only: the run's own files report a full disk themselves, with the space needed."""
        try:
            op()
        except (OSError, ValueError) as e:
            if not getattr(self, "_file_failed", False):
                self._file_failed = True
                self.console.write("Warning: cannot write the log file {} ({}); the log goes on here only\n".format(
                    getattr(self.file, "name", "?"), e))

    def close(self):
        if self.file is not None and not self.file.closed:
            self.file.close()

    def __getattr__(self, name):  # isatty, encoding, ... come from the real console
        return getattr(self.console, name)


def setup_logger(output=None):
    if output is None:
        return
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if osp.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")
    sys.stdout = Logger(fpath)


def progress(iterable, **kwargs):
    """``tqdm(iterable)`` on a terminal; the bare iterable when stdout or stderr is not a TTY
    (a captured log, ``nohup``, a batch job), where progress bars only pile up."""
    def tty(stream):
        try:
            return bool(stream.isatty())
        except (AttributeError, ValueError):
            return False
    if kwargs.pop("disable", False) or not (tty(sys.stdout) and tty(sys.stderr)):
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, **kwargs)


def set_random_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def global_rng_state():
    """The global generators' states (torch CPU and CUDA, numpy, Python), for a checkpoint."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state):
    """Put back what ``global_rng_state`` saved, so a resumed run draws what the uninterrupted one did."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- meters, metrics
class AverageMeter:
    def __init__(self, ema=False):
        self.ema = ema
        self.reset()

    def reset(self):
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = self.avg * 0.9 + self.val * 0.1
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    def __init__(self, delimiter=" "):
        self.meters = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict):
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for k, v in input_dict.items():
            if isinstance(v, torch.Tensor):
                v = v.item()
            self.meters[k].update(v)

    def __str__(self):
        return self.delimiter.join(
            "{} {:.4f} ({:.4f})".format(name, meter.val, meter.avg) for name, meter in self.meters.items()
        )


def compute_accuracy(output, target, topk=(1,)):
    """Top-k accuracies in percent, as a list of 1-element tensors (Dassl's ``dassl.metrics``)."""
    maxk = max(topk)
    batch_size = target.size(0)
    if isinstance(output, (tuple, list)):
        output = output[0]
    _, pred = output.topk(maxk, 1, True, True)
    pred = pred.t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    res = []
    for k in topk:
        correct_k = correct[:k].reshape(-1).float().sum(0, keepdim=True)
        res.append(correct_k.mul_(100.0 / batch_size))
    return res


def count_num_param(model=None, params=None):
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in params)


# ----------------------------------------------------------------------------- checkpoints
def _strip_module(state_dict):
    out = OrderedDict()
    for k, v in state_dict.items():
        out[k[7:] if k.startswith("module.") else k] = v
    return out


class CheckpointError(IOError):
    """A checkpoint that cannot be used: damaged (truncated, corrupted: ``damaged`` is True) or
    refused (it holds objects other than weights and optimizer / scheduler states)."""

    def __init__(self, message, damaged=True):
        super().__init__(message)
        self.damaged = damaged


DIGEST_KEY = "digest"  # sha256 over a checkpoint's contents, checked on load


def state_digest(obj):
    """sha256 over a checkpoint's contents (tensor and array bytes, numbers, strings, keys), in
    order: a checkpoint whose bytes changed after it was written no longer matches."""
    h = hashlib.sha256()

    def walk(x):
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update("T{}{}".format(t.dtype, tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, np.ndarray):
            h.update("A{}{}".format(x.dtype, x.shape).encode())
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, dict):
            h.update("D{}".format(len(x)).encode())
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, (list, tuple)):
            h.update("L{}".format(len(x)).encode())
            for v in x:
                walk(v)
        elif x is None or isinstance(x, (bool, int, float, str, bytes)):
            h.update("{}:{!r}".format(type(x).__name__, x).encode())
        else:  # objects only Dassl's own checkpoints hold (its scheduler's successor): by type
            h.update("O{}".format(type(x).__qualname__).encode())
    walk(obj)
    return h.hexdigest()


def save_checkpoint(state, save_dir, is_best=False, remove_module_from_keys=True, model_name="", write=None):
    """Write ``state`` as ``<save_dir>/<model_name or model.pth.tar-<epoch>>`` and note its name in
    ``<save_dir>/checkpoint``. Every file is written to a temporary name and renamed (``write``,
    default ``atomic_save``), so a save interrupted at any moment leaves the previous files as they
    were and never a truncated checkpoint; ``digest`` (``state_digest``) lets loading tell a file
    damaged later from a good one."""
    write = write or atomic_save
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = _strip_module(state["state_dict"])
    if not model_name:
        model_name = "model.pth.tar-" + str(state["epoch"])
    state = dict(state)
    state.pop(DIGEST_KEY, None)
    state[DIGEST_KEY] = state_digest(state)
    fpath = osp.join(save_dir, model_name)
    write(fpath, lambda f: torch.save(state, f), mode="wb")
    print("Checkpoint saved to {}".format(fpath))
    write(osp.join(save_dir, "checkpoint"), lambda f: f.write("{}\n".format(osp.basename(fpath))), mode="w")
    if is_best:
        best_fpath = osp.join(osp.dirname(fpath), "model-best.pth.tar")
        write(best_fpath, lambda f: torch.save(state, f), mode="wb")
        print('Best checkpoint saved to "{}"'.format(best_fpath))


def _defaultdict_as_dict(*args):
    """Stands in for ``collections.defaultdict`` when loading: Dassl's checkpoints pickle their
    scheduler's successor whole, optimizer (``state``: a defaultdict) included; only the
    successor's own state is read from it."""
    return {}


def _checkpoint_globals():
    """The classes a Dassl or PTNL checkpoint holds besides tensors and plain containers, allowed
    explicitly for ``torch.load(weights_only=True)``: numpy arrays (the random-generator states),
    and in Dassl's files the scheduler's successor object with the optimizer it pickles along."""
    from numpy.core import multiarray as _np_multiarray  # numpy 1 and 2 (an alias there)
    reconstruct = _np_multiarray._reconstruct
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), dict,
               (reconstruct, "numpy.core.multiarray._reconstruct"),
               (reconstruct, "numpy._core.multiarray._reconstruct"),
               (_defaultdict_as_dict, "collections.defaultdict"), collections.OrderedDict]
    for module in (torch.optim, torch.optim.lr_scheduler):
        for name in dir(module):
            obj = getattr(module, name)
            if isinstance(obj, type) and (issubclass(obj, torch.optim.Optimizer) or
                                          issubclass(obj, torch.optim.lr_scheduler.LRScheduler)):
                allowed.append(obj)
    return allowed


def _safe_torch_load(fpath, map_location):
    if hasattr(torch.serialization, "safe_globals"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy.core's deprecation alias
            allowed = _checkpoint_globals()
        with torch.serialization.safe_globals(allowed):
            return torch.load(fpath, map_location=map_location, weights_only=True)
    torch.serialization.add_safe_globals(_checkpoint_globals())  # torch < 2.5: no context manager
    return torch.load(fpath, map_location=map_location, weights_only=True)


def load_checkpoint(fpath):
    """Load a checkpoint written by Dassl or by this engine with ``torch.load(weights_only=True)``:
    tensors, plain containers and the few classes such files hold (``_checkpoint_globals``); a file
    carrying anything else (a pickled function, any other object) is refused, its code never run.
    A damaged file (truncated, corrupted, its digest not matching) raises ``CheckpointError``
    naming it."""
    if fpath is None:
        raise ValueError("File path is None")
    if not osp.exists(fpath):
        raise FileNotFoundError('File is not found at "{}"'.format(fpath))
    map_location = None if torch.cuda.is_available() else "cpu"
    try:
        checkpoint = _safe_torch_load(fpath, map_location)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Weights only load failed" in text or "Unsupported" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"global:? ([\w.]+)", text)
            what = 'a pickled "{}"'.format(found.group(1)) if found else "a pickled object"
            raise CheckpointError(
                'Refused to load checkpoint "{}": it holds {}, which is not weights, optimizer or scheduler '
                "state (checkpoints are loaded with torch.load(weights_only=True): their code never "
                "runs)".format(fpath, what), damaged=False) from None
        raise CheckpointError('Checkpoint "{}" is damaged ({})'.format(fpath, _first_line(e))) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, AttributeError,
            TypeError, UnicodeDecodeError) as e:
        raise CheckpointError('Checkpoint "{}" is damaged or truncated ({}: {})'.format(
            fpath, type(e).__name__, _first_line(e))) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError('Checkpoint "{}" is not a checkpoint (a {}, expected a dict with '
                              '"state_dict")'.format(fpath, type(checkpoint).__name__))
    stored = checkpoint.pop(DIGEST_KEY, None)
    if stored is not None and stored != state_digest(checkpoint):
        raise CheckpointError('Checkpoint "{}" is damaged: its contents do not match the digest written with '
                              "them".format(fpath))
    return checkpoint


def _first_line(e):
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def checkpoint_fields(checkpoint, fpath, keys=("state_dict", "epoch")):
    """``checkpoint`` when it has ``keys`` (the fields resuming needs), else ``CheckpointError``."""
    missing = [k for k in keys if k not in checkpoint]
    if missing:
        raise CheckpointError('Checkpoint "{}" has no {} (found: {})'.format(
            fpath, ", ".join(missing), ", ".join(map(str, checkpoint)) or "nothing"))
    return checkpoint


def resume_from_checkpoint(fdir, model, optimizer=None, scheduler=None):
    """Load the checkpoint named in ``<fdir>/checkpoint`` into model, optimizer and scheduler;
    returns the epoch to start from (Dassl's signature)."""
    return resume_checkpoint(fdir, model, optimizer, scheduler)["epoch"]


def resume_checkpoint(fdir, model, optimizer=None, scheduler=None):
    """``resume_from_checkpoint`` returning the whole checkpoint dict (its ``epoch`` is the epoch
    to start from; a PTNL checkpoint also holds ``rng_state``)."""
    fpath = osp.join(fdir, named_checkpoint(fdir))
    print('Loading checkpoint from "{}"'.format(fpath))
    checkpoint = checkpoint_fields(load_checkpoint(fpath), fpath)
    return apply_checkpoint(checkpoint, fpath, model, optimizer, scheduler)


def named_checkpoint(fdir):
    """The file name that ``<fdir>/checkpoint`` names (Dassl's pointer to the latest save)."""
    with open(osp.join(fdir, "checkpoint"), "r") as f:
        return (f.readline() or "").strip("\n")


def apply_checkpoint(checkpoint, fpath, model, optimizer=None, scheduler=None):
    """Put a loaded checkpoint into model, optimizer and scheduler with Dassl's lines; one that
    does not fit the model (another run's settings) raises ``CheckpointError`` naming the file."""
    try:
        model.load_state_dict(checkpoint["state_dict"])
        print("Loaded model weights")
        if optimizer is not None and checkpoint.get("optimizer") is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
            print("Loaded optimizer")
        if scheduler is not None and checkpoint.get("scheduler") is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
            print("Loaded scheduler")
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError('Checkpoint "{}" does not fit this model ({}): it was written by a run with other '
                              "settings; use another output folder or delete it".format(fpath, _first_line(e)),
                              damaged=False) from None
    print("Previous epoch: {}".format(checkpoint["epoch"]))
    return checkpoint


def load_pretrained_weights(model, weight_path):
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint
    model_dict = model.state_dict()
    new_state_dict = OrderedDict()
    matched, discarded = [], []
    for k, v in _strip_module(state_dict).items():
        if k in model_dict and model_dict[k].size() == v.size():
            new_state_dict[k] = v
            matched.append(k)
        else:
            discarded.append(k)
    model_dict.update(new_state_dict)
    model.load_state_dict(model_dict)
    if not matched:
        warnings.warn("Cannot load {} (check the key names manually)".format(weight_path))
    else:
        print("Successfully loaded pretrained weights from {}".format(weight_path))
        if discarded:
            print("Layers discarded due to unmatched keys or size: {}".format(discarded))
