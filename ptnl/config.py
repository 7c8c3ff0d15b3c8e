"""Every config key PTNL adds to the Dassl tree, with its default.

The keys of the built-in trainers and noise protocols are listed here; the losses' options are declared
once, next to each loss (``ptnl.losses.register_loss(options=...)``: key, default, comment, value rule),
and added from the loss registry, a plugin loss's like the built-in ones'. A plugin trainer, noise type
or dataset adds its keys next to its code with ``register_config_keys``.
"""
import ast
import json
import os
from collections.abc import Mapping
from typing import Callable, List

from yacs.config import CfgNode as CN

from ptnl import losses
from ptnl.rules import ANY, above, at_least, broken, int_at_least, is_int, is_number, one_of, rule


_HOOKS: List[Callable] = []

# DATALOADER.RANDOMNESS: where the training stream's randomness comes from (ptnl.data.randomness).
RANDOMNESS = ("per_sample", "coop")


def default_num_workers(cap: int = 8) -> int:
    """Loader worker processes for this machine: the CPUs this process may use, at most ``cap``
    (CoOp's 8). Results do not depend on it under ``per_sample`` randomness."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(cap, cpus))


def register_config_keys(fn: Callable) -> Callable:
    """Decorator: ``fn(cfg)`` adds a plugin's config keys; ``extend_cfg`` calls it after PTNL's own
    keys, so a key may only be added where it is missing."""
    _HOOKS.append(fn)
    return fn


def _default_of(cfg: CN, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, CN) or part not in node:
            return None
        node = node[part]
    return node


def _int_to_float(value, default):
    """``value`` as a float when the key's default is a float and ``value`` is an integer."""
    if not isinstance(default, float):
        return value
    literal = value
    if isinstance(value, str):
        try:
            literal = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return float(literal) if isinstance(literal, int) and not isinstance(literal, bool) else value


def merge_opts(cfg: CN, opts: List) -> None:
    """``cfg.merge_from_list(opts)`` accepting an integer for a float key, as people type numbers
    (``DATASET.NOISE.RATE 0``); yacs alone stops on the type mismatch. Range checks stay where
    the values are used."""
    opts = list(opts or ())
    for i in range(0, len(opts) - 1, 2):
        opts[i + 1] = _int_to_float(opts[i + 1], _default_of(cfg, opts[i]))
    cfg.merge_from_list(opts)


def merge_file(cfg: CN, path: str) -> None:
    """``cfg.merge_from_file(path)`` accepting an integer for a float key (``LR: 1``)."""
    with open(path) as f:
        loaded = cfg.load_cfg(f)

    def floatify(node, defaults, prefix):
        for key in list(node.keys()):
            default = _default_of(defaults, prefix + key)
            if isinstance(node[key], CN):
                floatify(node[key], defaults, prefix + key + ".")
            else:
                node[key] = _int_to_float(node[key], default)
    floatify(loaded, cfg, "")
    cfg.merge_from_other_cfg(loaded)


def extend_cfg(cfg: CN) -> CN:
    """Add PTNL's keys to a Dassl config (call from a CoOp fork's ``extend_cfg`` too).

    Args:
        cfg: a Dassl config (``get_cfg_default()``), not frozen.
    """
    cfg.DATASET.NOISE = CN()
    cfg.DATASET.NOISE.RATE = 0.0  # fraction of noisy shots, in [0, 1)
    cfg.DATASET.NOISE.TYPE = "sym"  # which wrong label: sym
    cfg.DATASET.NOISE.MODE = "swap"  # which samples: swap (per-class exact) | flip (global) | release (the release's)
    cfg.DATASET.NOISE.RELEASE_DUPLICATES = False  # release mode: draw with replacement, as the release (repeats)
    cfg.DATASET.NOISE.FILE = ""  # train on exactly this noisy-set file (CSV/JSON, python -m ptnl.noise export)
    cfg.DATASET.NOISE.FILE_COLUMN = ""  # its given-label column (multi-annotator files); "": label
    if "SUBSAMPLE_CLASSES" not in cfg.DATASET:
        cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # CoOp's key; kept so CoOp configs merge

    cfg.DATALOADER.RANDOMNESS = "per_sample"  # per_sample (same run for any NUM_WORKERS) | coop (CoOp's stream)
    cfg.DATALOADER.NUM_WORKERS = default_num_workers()  # this machine's CPUs, at most CoOp's 8

    cfg.TRAINER.PTNL = CN()
    cfg.TRAINER.PTNL.N_CTX = 16  # number of context tokens
    cfg.TRAINER.PTNL.CSC = False  # class-specific context
    cfg.TRAINER.PTNL.CTX_INIT = ""  # initialise the context from these words
    cfg.TRAINER.PTNL.CTX_INIT_MODE = "coop"  # coop (word count, shared context) | tokens (every BPE token, CSC copies)
    cfg.TRAINER.PTNL.CLASS_TOKEN_POSITION = "end"  # end | middle | front
    cfg.TRAINER.PTNL.PREC = "fp16"  # fp16 | fp32 | amp (CUDA; fp32 elsewhere) | bf16 (autocast, CPU or CUDA)
    cfg.TRAINER.PTNL.LOSS = "ce"  # see ptnl.losses.available_losses()
    losses.add_option_keys(cfg)  # every registered loss's options, declared next to the loss
    cfg.TRAINER.PTNL.SAVE_TEST_LOGITS = False  # write test_logits.pt (UPL always does) for seed ensembles
    cfg.TRAINER.PTNL.SAVE_TRAIN_PROBS = False  # write train_probs.npy: final model's class probabilities of the training set
    cfg.TRAINER.PTNL.ANALYSIS = False  # per-epoch gradient norms of clean vs noisy samples, confusion matrix
    cfg.TRAINER.PTNL.TRUNCATE_TEXT = True  # run the text transformer only up to the last end-of-text token
    cfg.TRAINER.PTNL.SHARE_PREFIX = True  # compute the prompts' common start (SOS + shared context) once, not per class
    cfg.TRAINER.PTNL.STACK = True  # grouped runs of one prompt shape: one text pass, one backward (stacked.py)
    cfg.TRAINER.PTNL.CACHE_FEATURES = True  # evaluate from cached test-split image features
    cfg.TRAINER.PTNL.CACHE_VERIFY = "stat"  # caches key on each image file's size+mtime (stat) | sha256 (content)
    cfg.TRAINER.PTNL.DECODE_CACHE_MB = 1024  # keep decoded training images in memory up to this size; 0: off
    cfg.TRAINER.PTNL.KEEP_CHECKPOINTS = 1  # periodic checkpoints kept (newest); 0 keeps all

    cfg.TRAINER.UPL = CN()
    cfg.TRAINER.UPL.NUM_PER_CLASS = -1  # pseudo-labelled images kept per class (<= 0: DATASET.NUM_SHOTS, else 16)
    cfg.TRAINER.UPL.SELECTION = "topk"  # topk (most confident, UPL) | random (the paper's variant)
    cfg.TRAINER.UPL.TEMPLATES = "dataset"  # dataset | ensemble (7 ImageNet templates + the dataset's)
    cfg.TRAINER.UPL.BACKBONES = ()  # pseudo-labelling CLIPs, probabilities averaged; () = MODEL.BACKBONE.NAME

    cfg.TRAINER.LINEAR_PROBE = CN()
    cfg.TRAINER.LINEAR_PROBE.PROTOCOL = "coop"  # coop (CoOp's lpclip: raw features, C searched on val) | fixed
    cfg.TRAINER.LINEAR_PROBE.C = 1e3  # fixed: inverse L2 regularisation strength of the logistic regression
    cfg.TRAINER.LINEAR_PROBE.SEARCH_C = False  # fixed: choose C on the val split from 1e-2 ... 1e4 instead
    cfg.TRAINER.LINEAR_PROBE.VAL_NOISE = False  # give the few-shot val split the run's label noise (default clean)
    cfg.TRAINER.LINEAR_PROBE.MAX_ITER = 1000

    # Sample-selection methods (ptnl.trainers.selection); defaults: the releases' rn50 settings, bugs fixed
    cfg.TRAINER.JOAPR = CN()
    cfg.TRAINER.JOAPR.WARMUP_EPOCH = 1  # epochs of CE + confidence penalty on the whole noisy set
    cfg.TRAINER.JOAPR.ALPHA1 = 0.5  # warm-up: weight of the confidence penalty sum p log p
    cfg.TRAINER.JOAPR.ALPHA2 = 0.5  # main: weight of KL(uniform || mean prediction)
    cfg.TRAINER.JOAPR.BETA = 0.001  # mixup lambda ~ Beta(BETA, BETA)
    cfg.TRAINER.JOAPR.TEMP = 2.0  # sharpening exponent of the soft targets
    cfg.TRAINER.JOAPR.AVERAGE_LOSS = True  # GMM on the mean of the last LOSS_WINDOW normalised loss vectors
    cfg.TRAINER.JOAPR.LOSS_WINDOW = 5
    cfg.TRAINER.JOAPR.PASS_TRANSFORM = "test"  # the per-epoch pass: test (the release's; cached features) | train
    cfg.TRAINER.JOAPR.RELEASE_BUGS = False  # True: the release's weights / intersection / N / empty-U crash

    cfg.TRAINER.NLPROMPT = CN()
    cfg.TRAINER.NLPROMPT.REG = 0.01  # Sinkhorn's entropic regularisation (release train.py; 0.001 underflows)
    cfg.TRAINER.NLPROMPT.COST = "p"  # p: the release's cost (-p up to a row constant) | logp: the paper's -log p
    cfg.TRAINER.NLPROMPT.SOLVER = "sinkhorn"  # sinkhorn (error on underflow) | sinkhorn_log | auto
    cfg.TRAINER.NLPROMPT.NUM_ITER = 1000  # Sinkhorn iterations at most
    cfg.TRAINER.NLPROMPT.STOP_THR = 1e-6  # Sinkhorn stopping threshold
    cfg.TRAINER.NLPROMPT.PASS_TRANSFORM = "test"  # the per-epoch pass: test (cached features) | train (the release's)
    cfg.TRAINER.NLPROMPT.RELEASE_BUGS = False  # True: drop_last in the pass and the subsets, all-zero plan accepted

    cfg.TRAINER.IMAGENET_FT = CN()
    cfg.TRAINER.IMAGENET_FT.ARCH = "resnet50"  # torchvision architecture when the weights are a file

    cfg.TRAINER.KGCOOP = CN()
    cfg.TRAINER.KGCOOP.W = 8.0  # weight of the distance to the hand-crafted text features (the release's runs: 8)

    # Deep prompt learners (ptnl/trainers/maple.py, promptsrc.py); defaults: the releases' train.py
    cfg.TRAINER.MAPLE = CN()
    cfg.TRAINER.MAPLE.N_CTX = 2  # prompt tokens per depth (text; the visual ones are their projections)
    cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"  # its first N_CTX tokens are learned, the rest stay fixed words
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # blocks that get prompts (1: the input only)
    cfg.TRAINER.PROMPTSRC = CN()
    cfg.TRAINER.PROMPTSRC.N_CTX_TEXT = 4
    cfg.TRAINER.PROMPTSRC.N_CTX_VISION = 4
    cfg.TRAINER.PROMPTSRC.CTX_INIT = "a photo of a"
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 9
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 9
    cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = 25.0  # L1 to frozen CLIP's 60-template text features
    cfg.TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT = 10.0  # L1 to frozen CLIP's image features
    cfg.TRAINER.PROMPTSRC.LOGIT_LOSS_WEIGHT = 1.0  # KL to frozen CLIP's logits (hard-coded 1 in the release)
    cfg.TRAINER.PROMPTSRC.GPA_MEAN = 15.0  # Gaussian prompt aggregation over epochs: mean epoch
    cfg.TRAINER.PROMPTSRC.GPA_STD = 1.0  # and its standard deviation
    for hook in _HOOKS:
        hook(cfg)
    return cfg


class _OpenNode(CN):
    """A config node that grows the child a hook asks for: ``added_defaults`` runs ``extend_cfg`` on
    it without Dassl's tree (and so without torch)."""

    def __getattr__(self, name):
        if name in self:
            return self[name]
        if name.startswith("__"):
            raise AttributeError(name)
        node = _OpenNode()
        self[name] = node
        return node


# Keys whose default depends on the machine (not on the behaviour a run had): never a baseline.
MACHINE_DEFAULTS = ("DATALOADER.NUM_WORKERS",)


def added_defaults() -> dict:
    """{"TRAINER.PTNL.N_CTX": 16, ...}: the default of every key ``extend_cfg`` adds (PTNL's and the
    registered plugins'), flat, without Dassl's own keys: what a key a run's record lacks stood at, for
    run identity (``ptnl.runs.identity``) in processes without torch."""
    out = {}

    def walk(node, prefix):
        for k in sorted(node):
            if isinstance(node[k], CN):
                walk(node[k], prefix + k + ".")
            elif prefix + k not in MACHINE_DEFAULTS:
                out[prefix + k] = json.loads(json.dumps(node[k], default=str))  # as results.json records it
    walk(extend_cfg(_OpenNode()), "")  # every call: a plugin registered since adds its keys
    return out


# ----------------------------------------------------------------------------- value checks
def _names(x):
    return isinstance(x, (list, tuple)) and all(isinstance(n, str) and n for n in x)


# The range or choices of every key ``extend_cfg`` adds (and of the toolbox keys whose bad values
# would only fail deep inside a run). Names checked against a registry (losses, noise types and
# modes, trainers, datasets, backbones) are left to those registries' own checks. The losses' options
# carry their rules with them (``ptnl.losses.option_rules``): ``VALUE_RULES`` reads both.
_KEY_RULES = {
    "DATASET.NOISE.RATE": rule(lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "DATASET.NOISE.TYPE": ANY, "DATASET.NOISE.MODE": ANY,  # their registries (ptnl.noise.check_protocol)
    "DATASET.NOISE.RELEASE_DUPLICATES": ANY, "DATASET.NOISE.FILE": ANY, "DATASET.NOISE.FILE_COLUMN": ANY,
    "DATASET.SUBSAMPLE_CLASSES": one_of("all", "base", "new"),
    "DATASET.NUM_SHOTS": rule(lambda v: is_int(v) and (v >= 1 or v == -1), "an integer >= 1 (or -1: all images)"),
    "DATALOADER.RANDOMNESS": one_of(*RANDOMNESS),
    "DATALOADER.NUM_WORKERS": int_at_least(0),
    "DATALOADER.TRAIN_X.BATCH_SIZE": int_at_least(1), "DATALOADER.TEST.BATCH_SIZE": int_at_least(1),
    "OPTIM.LR": above(0), "OPTIM.MAX_EPOCH": int_at_least(1), "OPTIM.WARMUP_EPOCH": int_at_least(-1),
    "OPTIM.WEIGHT_DECAY": at_least(0), "OPTIM.MOMENTUM": at_least(0),
    "TRAIN.CHECKPOINT_FREQ": int_at_least(0), "TRAIN.PRINT_FREQ": int_at_least(1),
    "INPUT.SIZE": rule(lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(is_int(x) and x > 0 for x in v),
                       "two positive integers, e.g. (224, 224)"),
    "TRAINER.PTNL.N_CTX": int_at_least(0),  # 0: no context (the context-length ablation's zero point)
    "TRAINER.PTNL.CSC": ANY, "TRAINER.PTNL.CTX_INIT": ANY,
    "TRAINER.PTNL.CTX_INIT_MODE": one_of("coop", "tokens"),
    "TRAINER.PTNL.CLASS_TOKEN_POSITION": one_of("end", "middle", "front"),
    "TRAINER.PTNL.PREC": one_of("fp16", "fp32", "amp", "bf16"),
    "TRAINER.PTNL.LOSS": ANY,  # the loss registry (ptnl.losses); its options' rules sit with each loss
    "TRAINER.PTNL.SAVE_TEST_LOGITS": ANY, "TRAINER.PTNL.SAVE_TRAIN_PROBS": ANY, "TRAINER.PTNL.ANALYSIS": ANY,
    "TRAINER.PTNL.TRUNCATE_TEXT": ANY, "TRAINER.PTNL.SHARE_PREFIX": ANY, "TRAINER.PTNL.CACHE_FEATURES": ANY,
    "TRAINER.PTNL.CACHE_VERIFY": one_of("stat", "sha256"), "TRAINER.PTNL.STACK": ANY,
    "TRAINER.PTNL.DECODE_CACHE_MB": int_at_least(0),
    "TRAINER.PTNL.KEEP_CHECKPOINTS": int_at_least(0),
    "TRAINER.UPL.NUM_PER_CLASS": rule(is_int, "an integer (<= 0: DATASET.NUM_SHOTS)"),
    "TRAINER.UPL.SELECTION": one_of("topk", "random"),
    "TRAINER.UPL.TEMPLATES": one_of("dataset", "ensemble"),
    "TRAINER.UPL.BACKBONES": rule(_names, "a list of backbone names, e.g. ('RN50', 'ViT-B/32')"),
    "TRAINER.LINEAR_PROBE.PROTOCOL": one_of("coop", "fixed"),
    "TRAINER.LINEAR_PROBE.C": above(0), "TRAINER.LINEAR_PROBE.SEARCH_C": ANY,
    "TRAINER.LINEAR_PROBE.VAL_NOISE": ANY, "TRAINER.LINEAR_PROBE.MAX_ITER": int_at_least(1),
    "TRAINER.JOAPR.WARMUP_EPOCH": int_at_least(0),
    "TRAINER.JOAPR.ALPHA1": at_least(0), "TRAINER.JOAPR.ALPHA2": at_least(0),
    "TRAINER.JOAPR.BETA": above(0), "TRAINER.JOAPR.TEMP": above(0), "TRAINER.JOAPR.AVERAGE_LOSS": ANY,
    "TRAINER.JOAPR.LOSS_WINDOW": int_at_least(1), "TRAINER.JOAPR.PASS_TRANSFORM": one_of("test", "train"),
    "TRAINER.JOAPR.RELEASE_BUGS": ANY,
    "TRAINER.NLPROMPT.REG": above(0), "TRAINER.NLPROMPT.COST": one_of("p", "logp"),
    "TRAINER.NLPROMPT.SOLVER": one_of("sinkhorn", "sinkhorn_log", "auto"),
    "TRAINER.NLPROMPT.NUM_ITER": int_at_least(1), "TRAINER.NLPROMPT.STOP_THR": above(0),
    "TRAINER.NLPROMPT.PASS_TRANSFORM": one_of("test", "train"), "TRAINER.NLPROMPT.RELEASE_BUGS": ANY,
    "DATASET.FOOD101N.TEST_PROTOCOL": one_of("food101", "coop"),  # datasets/food101n.py's keys
    "DATASET.FOOD101N.FOOD101_DIR": ANY, "DATASET.FOOD101N.SYNTHETIC_NOISE": ANY,
    "TRAINER.IMAGENET_FT.ARCH": rule(lambda v: isinstance(v, str) and bool(v), "a torchvision architecture name"),
    "TRAINER.KGCOOP.W": at_least(0),
    "TRAINER.MAPLE.N_CTX": int_at_least(1), "TRAINER.MAPLE.CTX_INIT": ANY,
    "TRAINER.MAPLE.PROMPT_DEPTH": int_at_least(1),
    "TRAINER.PROMPTSRC.N_CTX_TEXT": int_at_least(1), "TRAINER.PROMPTSRC.N_CTX_VISION": int_at_least(1),
    "TRAINER.PROMPTSRC.CTX_INIT": ANY,
    "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT": int_at_least(1), "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION": int_at_least(1),
    "TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT": at_least(0), "TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT": at_least(0),
    "TRAINER.PROMPTSRC.LOGIT_LOSS_WEIGHT": at_least(0),
    "TRAINER.PROMPTSRC.GPA_MEAN": above(0),  # an epoch (1-based; may lie between or beyond the run's)
    "TRAINER.PROMPTSRC.GPA_STD": above(0),
}


class _ValueRules(Mapping):
    """The keys' rules: this module's table, then every registered loss's options (a plugin's as soon
    as it is registered)."""

    def _all(self):
        return {**_KEY_RULES, **losses.option_rules()}

    def __getitem__(self, key):
        return self._all()[key]

    def __iter__(self):
        return iter(self._all())

    def __len__(self):
        return len(self._all())

    def items(self):  # one pass over the registry, not one per key (Mapping's items() looks each key up)
        return self._all().items()


VALUE_RULES = _ValueRules()


def check_values(cfg: CN) -> None:
    """Every key of ``VALUE_RULES`` that ``cfg`` has must hold a value in its range or choices;
    the first that does not raises ``ConfigError`` naming the key, what it takes and the value
    (before anything is written). Types are yacs's to check when values are merged.

    Args:
        cfg: the run's config.
    """
    from ptnl.errors import ConfigError
    for key, key_rule in VALUE_RULES.items():
        node, found = cfg, True
        for part in key.split("."):
            if not isinstance(node, CN) or part not in node:
                found = False
                break
            node = node[part]
        message = broken(key, key_rule, node) if found else ""
        if message:
            raise ConfigError(message)
