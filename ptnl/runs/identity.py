"""A run's identity: its resolved config as a flat ``{"KEY.SUB": value}`` dict (stored in
``results.json`` as ``config``), the digest of the part of it that can change results
(``settings_digest``), the keys where two configs differ, and the check ``train.py`` makes before it
trains into a folder that already holds a finished run. Pure functions over dicts (a yacs
``CfgNode`` is a dict); no torch (the keys' defaults come from ``ptnl.config``)."""
import hashlib
import json
import os.path as osp
import re
from typing import Dict, Iterable, List, Optional, Tuple

from ptnl.runs.files import RESULTS_FILE

# Keys that never change a run's results: where things are read from and written to, how much is
# printed or kept on disk, caches, the device switch, and the seed (runs that differ only in it are
# the seeds of one experiment). Left out of ``settings_digest`` and of every comparison.
NON_RESULT_KEYS = (
    "SEED", "OUTPUT_DIR", "RESUME", "DATASET.ROOT", "VERBOSE", "TRAIN.PRINT_FREQ", "DATALOADER.NUM_WORKERS",
    "USE_CUDA", "TRAINER.PTNL.KEEP_CHECKPOINTS", "TRAINER.PTNL.SAVE_TEST_LOGITS", "TRAINER.PTNL.SAVE_TRAIN_PROBS",
    "TRAINER.PTNL.DECODE_CACHE_MB", "TRAINER.PTNL.STACK",
    "TRAINER.PTNL.CACHE_FEATURES", "TRAINER.PTNL.CACHE_VERIFY", "TRAIN.CHECKPOINT_FREQ",
)
ABSENT = "(absent)"  # how a key one config lacks is shown
# The worker count changes results only with Dassl's own loader stream (ptnl.data.randomness).
WORKERS_MATTER = ("DATALOADER.RANDOMNESS", "coop")
# Sections of the config that belong to one trainer or one dataset: a key under TRAINER.<S>. (but the shared
# TRAINER.PTNL.) counts only for runs whose trainer reads section S, one under DATASET.<S>. (but the shared
# DATASET.NOISE.) only for runs of dataset S. A run's trainer reads the section named as it is (TRAINER.NAME
# JoAPR: TRAINER.JOAPR, LinearProbe: TRAINER.LINEAR_PROBE; case and "_" aside) and, where results.json lists
# them (``config_sections``, derived from the class: a subclass of JoAPR reads TRAINER.JOAPR too), those.
SHARED_SECTIONS = ("TRAINER.PTNL.", "DATASET.NOISE.")
OWNED_BY = {"TRAINER": "TRAINER.NAME", "DATASET": "DATASET.NAME"}  # section kind: the key naming its reader


# A key that a finished run's record lacks was added after that run. Its run behaved as the key's
# default does, except for these keys, whose introduction changed the default behaviour: the value
# the older run in effect used.
IMPLIED_WHEN_ABSENT = {
    "DATALOADER.RANDOMNESS": "coop",  # Dassl's stream before per_sample existed
    "TRAINER.LINEAR_PROBE.PROTOCOL": "fixed",  # the probe before CoOp's lpclip protocol
    "TRAINER.PTNL.CTX_INIT_MODE": "tokens",  # CTX_INIT counted in BPE tokens before CoOp's word count
}


def known_defaults() -> Dict:
    """The defaults ``ptnl.config`` gives the keys PTNL and the loaded plugins add (``added_defaults``)."""
    from ptnl.config import added_defaults  # here: the sweep, which reads no digest, needs no yacs
    return added_defaults()


def baseline(key: str, defaults: Optional[Dict] = None, known: Optional[Dict] = None):
    """What ``key`` stood at in a run whose record lacks it: its ``IMPLIED_WHEN_ABSENT`` value, else its
    default as ``ptnl.config`` gives it in this process (``known``, default ``known_defaults()``: plugins
    loaded), else in ``defaults`` (e.g. the run's own record of them, results.json ``config_defaults``);
    ``ABSENT`` for a key none of them knows."""
    if key in IMPLIED_WHEN_ABSENT:
        return IMPLIED_WHEN_ABSENT[key]
    known = known_defaults() if known is None else known
    if key in known:
        return known[key]
    return (defaults or {}).get(key, ABSENT)


def _norm(name) -> str:
    return str(name).upper().replace("_", "")


def _section(key: str) -> Optional[str]:
    """``TRAINER.<S>.`` or ``DATASET.<S>.`` of a key that belongs to one trainer or dataset, else None."""
    parts = key.split(".")
    if len(parts) < 3 or parts[0] not in OWNED_BY:
        return None
    prefix = "{}.{}.".format(parts[0], parts[1])
    return None if prefix in SHARED_SECTIONS else prefix


def reads(flat: Dict, section: str, sections: Optional[Iterable[str]] = None) -> bool:
    """Whether the run of ``flat`` reads ``section``: it is named as the run's trainer (dataset), or listed
    in ``sections`` (results.json ``config_sections``)."""
    kind, name = section.split(".")[:2]
    return _norm(name) == _norm(flat.get(OWNED_BY[kind])) or section in (sections or ())


def ignored_keys(*flats: Dict, sections: Optional[Iterable[str]] = None) -> Tuple[str, ...]:
    """NON_RESULT_KEYS, less DATALOADER.NUM_WORKERS when one of ``flats`` ran with
    ``DATALOADER.RANDOMNESS coop`` (or predates the key, i.e. ran CoOp's stream), plus the keys of the
    trainer and dataset sections that none of their runs reads (``reads``; ``sections``: those their
    records list, all runs' together)."""
    key, value = WORKERS_MATTER
    keys = NON_RESULT_KEYS
    if any(f.get(key, value) == value for f in flats):
        keys = tuple(k for k in NON_RESULT_KEYS if k != "DATALOADER.NUM_WORKERS")
    owned = {_section(k) for f in flats for k in f} - {None}
    unread = {s for s in owned if not any(reads(f, s, sections) for f in flats)}
    return keys + tuple(sorted(k for k in {k for f in flats for k in f} if _section(k) in unread))


def identity_settings(flat: Dict, sections: Optional[Iterable[str]] = None, defaults: Optional[Dict] = None) -> Dict:
    """What a run's identity is made of: ``result_settings`` less the keys at their ``baseline`` (a key at
    its default, or added after the run, splits no seeds; a key whose default none knows counts as it is).
    ``sections``, ``defaults``: the run's records of them (results.json ``config_sections``,
    ``config_defaults``), where there are."""
    known = known_defaults()
    return {k: v for k, v in result_settings(flat, ignored_keys(flat, sections=sections)).items()
            if baseline(k, defaults, known) != v}


def _jsonable(v):
    return json.loads(json.dumps(v, default=str))


def flat_config(cfg) -> Dict:
    """The whole config as ``{"DATASET.NOISE.RATE": 0.5, ...}`` with JSON values (tuples become
    lists), as ``results.json`` stores it."""
    out = {}

    def walk(node, prefix):
        for k in sorted(node):
            v = node[k]
            if isinstance(v, dict):
                walk(v, prefix + k + ".")
            else:
                out[prefix + k] = _jsonable(v)
    walk(cfg, "")
    return out


def result_settings(flat: Dict, ignore=None) -> Dict:
    """``flat`` without the keys that do not change results (``ignored_keys``)."""
    ignore = ignored_keys(flat) if ignore is None else ignore
    return {k: v for k, v in flat.items() if k not in ignore}


def settings_digest(flat: Dict, sections: Optional[Iterable[str]] = None, defaults: Optional[Dict] = None) -> str:
    """sha256 over the settings that can change results and are not at their baseline
    (``identity_settings``): runs with equal digests are seeds of one experiment and may be averaged.
    A key added later (a plugin's, a new option) changes no earlier run's digest, and a run that
    leaves it at its default shares theirs.

    Args:
        flat: a run's flat config (``flat_config``, results.json ``config``).
        sections: the config sections its trainer reads (results.json ``config_sections``).
        defaults: the defaults of its config keys as its run knew them (results.json ``config_defaults``:
            a plugin's keys, where this process has not loaded the plugin).
    """
    text = json.dumps(identity_settings(flat, sections, defaults), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_diff(a: Dict, b: Dict, ignore=None, defaults: Optional[Dict] = None,
                sections: Optional[Iterable[str]] = None) -> List[Tuple[str, object, object]]:
    """(key, value in a, value in b) for every result-changing key where two flat configs differ,
    sorted by key. A key one of them (a stored record) lacks takes its ``baseline``: its
    ``IMPLIED_WHEN_ABSENT`` value, else its value in ``defaults`` (the current flat defaults: the key was
    added later, at the behaviour older runs had) or in ``ptnl.config``, else shows as ``ABSENT``.
    ``sections``: as ``ignored_keys``."""
    ignore = ignored_keys(a, b, sections=sections) if ignore is None else ignore
    known, out = known_defaults(), []
    for k in sorted(set(a) | set(b)):
        if k in ignore:
            continue
        va = a[k] if k in a else baseline(k, defaults, known)
        vb = b[k] if k in b else baseline(k, defaults, known)
        if va != vb:
            out.append((k, va, vb))
    return out


def show_value(v) -> str:
    return v if v == ABSENT else json.dumps(v)


DIFF_LINE = "    {}: stored {}, requested {}"  # one differing key in ``finished_run``'s message
DIFF_LINE_RE = re.compile(r"^    (\S+): stored (.*), requested (.*)$")


def differing_keys(message: str) -> List[Tuple[str, str, str]]:
    """(key, stored, requested) of each differing key named in ``finished_run``'s message (as
    train.py prints it), for the listings that show a run's differences in one line."""
    return [m.groups() for m in map(DIFF_LINE_RE.match, message.splitlines()) if m]


def finished_run(cfg, results_file: Optional[str] = None, defaults: Optional[Dict] = None) -> Tuple[Optional[int], str]:
    """What ``train.py`` does when ``cfg.OUTPUT_DIR`` already holds a finished run:
    ``(None, "")`` when there is none (train), ``(0, "Done already: DIR")`` when it ran these
    settings, ``(3, message)`` naming each differing key (stored and requested value) when it did
    not. A ``results.json`` without ``config`` (written before per-key records) is compared by its
    ``config_digest`` (sha256 of the printed config) when it has one."""
    out_dir = cfg["OUTPUT_DIR"]
    path = results_file or osp.join(out_dir, RESULTS_FILE)
    if not osp.isfile(path):
        return None, ""
    try:
        with open(path) as f:
            stored = json.load(f)
    except (OSError, ValueError) as e:
        return 3, "{} is unreadable ({}); move it away to train this run again".format(path, e)
    keep = ("To keep both runs, write this one elsewhere: OUT=<folder> or VARIANT=<name> with scripts/ptnl/"
            "main.sh, or another --output-dir with train.py; to replace it, delete {}".format(out_dir))
    if isinstance(stored.get("config"), dict):
        diff = config_diff(stored["config"], flat_config(cfg), defaults=defaults,
                           sections=stored.get("config_sections"))  # the same trainer, or TRAINER.NAME differs
        if not diff:
            return 0, "Done already: {}".format(out_dir)
        lines = ["{} holds a finished run with other settings:".format(out_dir)]
        lines += [DIFF_LINE.format(k, show_value(a), show_value(b)) for k, a, b in diff]
        return 3, "\n".join(lines + [keep])
    if stored.get("config_digest"):
        from ptnl.runs.files import config_digest
        if stored["config_digest"] == config_digest(cfg):
            return 0, "Done already: {}".format(out_dir)
        return 3, ("{} holds a finished run whose settings differ from the requested ones (its config digest "
                   "differs); the run predates per-key records, so the differing keys cannot be named.\n{}".format(
                       out_dir, keep))
    return 0, "Done already: {}".format(out_dir)
