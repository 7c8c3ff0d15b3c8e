"""A run's config, as ``train.py`` resolves it: the registries (PTNL_PLUGINS, then the repository's
``datasets/`` and ``trainers/``), Dassl's defaults and PTNL's keys, the dataset and trainer yaml,
the flags, the trailing ``KEY VALUE`` pairs, the methods' presets, and the settings taken from
elsewhere than the command line (CLIP's preprocessing and input size; an evaluation's model
settings from its trained run), each noted for the log."""
import contextlib
import difflib
import json
import os
import os.path as osp
import re
from typing import Dict, List, Optional

from ptnl import compat
from ptnl.cli.checks import EXAMPLE, check_required, trainer_class, uses_clip
from ptnl.clip.preprocess import CLIP_INPUT, check_input_size, input_resolution, use_backbone_input
from ptnl.clip.weights import PRETRAINED, downloads_off, resolve_weights, same_weights
from ptnl.config import extend_cfg, merge_file, merge_opts
from ptnl.errors import ConfigError, MissingFileError
from ptnl.plugins import load_plugins
from ptnl.runs.files import RESULTS_FILE
from ptnl.runs.identity import IMPLIED_WHEN_ABSENT, flat_config
from ptnl.runs.logs import config_dump, log_files
from ptnl.trainers.selection.base import apply_method_presets

# the checkout that holds configs/ (train.py's folder): where a missing --config-file is looked for
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# The settings that shape the model and its input (a key, or a prefix ending in "."): an evaluation
# (--eval-only) takes them from the trained run. A trainer adds its own with a MODEL_KEYS attribute.
MODEL_KEYS = ("TRAINER.NAME", "MODEL.", "INPUT.", "TRAINER.PTNL.N_CTX", "TRAINER.PTNL.CSC", "TRAINER.PTNL.CTX_INIT",
              "TRAINER.PTNL.CTX_INIT_MODE", "TRAINER.PTNL.CLASS_TOKEN_POSITION", "TRAINER.PTNL.PREC",
              "TRAINER.IMAGENET_FT.ARCH")
# The flags that set a config key (the rest of the command line's keys are the trailing KEY VALUE pairs).
FLAG_KEYS = {"trainer": "TRAINER.NAME", "backbone": "MODEL.BACKBONE.NAME", "head": "MODEL.HEAD.NAME",
             "transforms": "INPUT.TRANSFORMS"}
# yacs's words for a key the config does not have (merge_from_list / merge_from_file)
_UNKNOWN_KEY = re.compile(r"Non-existent (?:config )?key: ([\w.]+)")


def load_registries() -> None:
    """PTNL_PLUGINS first (a trainer registered there must exist before the trainers are put into
    the engine's registry), then the repository's datasets and trainers, importable from
    ``train.py``'s folder as in CoOp. Importing twice changes nothing."""
    load_plugins()  # modules or .py files adding losses, noise types, trainers, weights
    import datasets  # noqa: F401  (registers the datasets)
    import trainers.ptnl  # noqa: F401  (registers the trainers)


def reset_cfg(cfg, args) -> None:
    """CoOp's ``reset_cfg``: the flags that set a config value."""
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


def setup_cfg(args):
    """The run's resolved config (frozen): defaults, dataset and trainer yaml, flags, the trailing
    KEY VALUE pairs, method presets; then, for CLIP trainers, CLIP's preprocessing when no
    --config-file names one and INPUT.SIZE from the backbone unless the command line sets it, and for
    --eval-only the model settings of the trained run (``use_trained_settings``). What was taken
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
    check_required(cfg)  # trainer and dataset first: the settings below depend on them
    given, notes = command_line_keys(args), []
    trainer = trainer_class(cfg.TRAINER.NAME)
    if uses_clip(trainer):
        if not args.config_file:
            notes += use_clip_input(cfg, given)
        if args.eval_only and args.model_dir:
            notes += use_trained_settings(cfg, args.model_dir, given, default_settings())
        notes += use_backbone_size(cfg, given if not (args.eval_only and args.model_dir) else
                                   dict(given, **{"INPUT.SIZE": "the trained run"}),
                                   need_weights=not getattr(args, "dry_run", False))
        if not (args.eval_only and args.model_dir):  # open_clip backbones: the model's own mean, std, interpolation
            notes += use_backbone_input(cfg, given)
    elif args.eval_only and args.model_dir and trainer is not None:
        notes += use_trained_settings(cfg, args.model_dir, given, default_settings())
    args._notes = notes
    cfg.freeze()
    return cfg


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


def default_settings() -> Dict:
    """The flat default config (Dassl's and PTNL's keys): what a key missing from an older run's
    record stood at."""
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    return flat_config(cfg)


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


def config_warnings(args, cfg, repo: str = REPO) -> List[str]:
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
