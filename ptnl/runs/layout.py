"""The run-folder layout of the scripts (``scripts/ptnl/lib.sh``, ``ptnl_run_dir``)::

    <out>/<dataset>/<TRAINER>/<backbone>/<type>-<mode>-<rate>/<loss>/[<variant>/]<setting>/seed<S>

<setting> is ``shots<K>_nctx<N>_csc<C>_ctp<P>``, or ``shots<K>`` for trainers without prompt
settings (LinearProbe, ClassifierR, ...; older trees carry the long form for them too); <rate> is
Python's repr of the float (``rate_name``; older trees may hold ``0.50``, read as the same rate);
<backbone> is the CLIP_WEIGHTS name when one was given (``pocket``, a weights file's name without
extension, ``arch@pretrained`` for ``open_clip:arch/pretrained``), else the script's BACKBONE
argument. Read back from a run folder's path."""
import ast
import os
import os.path as osp
import re

SEED_DIR_RE = re.compile(r"^seed(-?\d+)$")
SETTING_DIR_RE = re.compile(r"^shots(\d+)(?:_nctx(\d+)_csc(.+?)_ctp(.+))?$")
NOISE_DIR_RE = re.compile(r"^([a-z]+)-([a-z]+)-(\d*\.?\d+(?:[eE]-?\d+)?)$")


def rate_name(rate) -> str:
    """A noise rate as its folder names it: Python's repr of the float (``0.50``, ``.5`` -> ``0.5``)."""
    return repr(float(rate))


def literal(text):
    """A config value as printed by yacs / a path component, back to a Python value."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_run_path(run_dir):
    """Fields of main.sh's layout, read from the end of the folder name:
    ``<dataset>/<TRAINER>/<backbone>/<type>-<mode>-<rate>/<loss>/[<variant>/]<setting>/seed<S>``.
    Whatever does not fit the layout is left out."""
    parts = osp.normpath(osp.abspath(run_dir)).split(os.sep)
    out = {}
    m = SEED_DIR_RE.match(parts[-1])
    if not m:
        return out
    out["seed"] = int(m.group(1))
    m = SETTING_DIR_RE.match(parts[-2]) if len(parts) > 1 else None
    if not m:
        return out
    out["num_shots"] = int(m.group(1))
    if m.group(2) is not None:
        out.update(n_ctx=int(m.group(2)), csc=literal(m.group(3)), ctp=m.group(4))
    setting = len(parts) - 2
    for i in range(setting - 2, 2, -1):  # the noise folder: dataset, trainer, backbone above; loss below
        m = NOISE_DIR_RE.match(parts[i])
        if m:
            out.update(dataset=parts[i - 3], trainer=parts[i - 2], backbone=parts[i - 1], noise_type=m.group(1),
                       noise_mode=m.group(2), noise_rate=float(m.group(3)), loss=parts[i + 1],
                       variant="/".join(parts[i + 2:setting]) or None)
            break
    return out


def setting_dir(run_dir):
    """The folder of a run's settings (its seeds' parent) in main.sh's layout, else None."""
    run_dir = osp.normpath(osp.abspath(run_dir))
    return osp.dirname(run_dir) if SEED_DIR_RE.match(osp.basename(run_dir)) else None


# What the scripts' run folder names encode, and what sets each in them (main.sh's arguments and
# environment; the grid scripts' lists). A trailing KEY VALUE option naming one of these would train
# other settings than the folder says, so the scripts refuse it (``folder_key_override``).
FOLDER_KEYS = {
    "DATASET.NAME": "main.sh's DATASET argument",
    "MODEL.BACKBONE.NAME": "CLIP_WEIGHTS=<name or weights file> (the backbone folder is named after it)",
    "TRAINER.NAME": "TRAINER=<name> (TRAINERS, CONFIGS or METHODS in the grid scripts)",
    "DATASET.NOISE.TYPE": "NOISE_TYPE=<type>",
    "DATASET.NOISE.MODE": "NOISE_MODE=<mode>",
    "DATASET.NOISE.RATE": "main.sh's NOISE_RATE argument (RATES in the grid scripts)",
    "TRAINER.PTNL.LOSS": "main.sh's LOSS argument (LOSSES or METHODS in the grid scripts)",
    "DATASET.NUM_SHOTS": "SHOTS=<K>",
    "TRAINER.PTNL.N_CTX": "NCTX=<N> (NCTXS in ctx_length.sh)",
    "TRAINER.PTNL.CSC": "CSC=<True|False>",
    "TRAINER.PTNL.CLASS_TOKEN_POSITION": "CTP=<end|middle|front>",
    "SEED": "SEEDS=<list>",
    "OUTPUT_DIR": "OUT=<folder> (and VARIANT=<name> for an extra folder level)",
}
# What a script encodes in the VARIANT folder level and passes itself (scripts/upl/main.sh): a
# second, different value among the trailing options contradicts the folder.
VARIANT_KEYS = {
    "TRAINER.UPL.SELECTION": "scripts/upl/main.sh's SELECTION argument",
    "TRAINER.UPL.TEMPLATES": "TEMPLATES=<dataset|ensemble>",
    "TRAINER.UPL.BACKBONES": "PSEUDO_BACKBONES=<names>",
}


def folder_key_override(opts) -> str:
    """Why the trailing ``KEY VALUE`` options ``opts`` of a script's run contradict its folder name
    (one line naming the key and what sets it instead), or "" when they do not."""
    seen = {}
    for key, value in zip(opts[0::2], opts[1::2]):
        if key in FOLDER_KEYS:
            return ("{} {} among the trailing KEY VALUE options: the run folder's name encodes {}, so an override "
                    "would train other settings than the folder says; set it with {} instead".format(
                        key, value, key, FOLDER_KEYS[key]))
        if key in VARIANT_KEYS:
            if key in seen and literal(seen[key]) != literal(value):
                return ("{} {} among the trailing KEY VALUE options contradicts {} {}, which the run folder's name "
                        "encodes; set it with {} instead".format(key, value, key, seen[key], VARIANT_KEYS[key]))
            seen.setdefault(key, value)
    return ""
