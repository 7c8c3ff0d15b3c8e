"""Reading runs: every run folder under some folders, finished (``results.json``, or a CoOp-style
log that reached the end and tested) or not, as flat records that tables group by settings."""
import json
import math
import os
import os.path as osp
import re
import time
from typing import Dict, Iterable, List, Optional, Tuple

from ptnl.io.log import ago
from ptnl.io.trainer_classes import declared
from ptnl.runs.files import EVALUATION_FILE, RESULTS_FILE
from ptnl.runs.identity import settings_digest
from ptnl.runs.layout import parse_run_path
from ptnl.runs.logs import END_LINES, LOG_RE, log_files, parse_log

# A run's identity: the settings that make two runs "the same experiment but for the seed".
CORE_KEYS = ("dataset", "trainer", "backbone", "noise_type", "noise_mode", "noise_rate", "loss", "num_shots",
             "n_ctx")
# The remaining settings: prompt shape, GCE's q, and the VARIANT folder level of main.sh (settings
# passed as trailing KEY VALUE pairs). Tables show them only where they differ between rows.
OTHER_KEYS = ("csc", "ctp", "ctx_init", "gce_q", "variant")
GROUP_KEYS = CORE_KEYS + OTHER_KEYS
# What a log-only run must tell for it to be placed; the ones it does not are reported as unknown.
IDENTITY_KEYS = ("dataset", "trainer", "backbone", "noise_type", "noise_mode", "noise_rate", "loss", "num_shots",
                 "seed")
# The settings a table states once above itself (every row alike) rather than per row: they change
# every number but sit in no column (``run_settings``).
RUN_SETTINGS = ("epochs", "weights", "engine", "randomness", "precision")
POCKET_WEIGHTS = "pocket"  # the weights name ptnl.pocket registers (MODEL.BACKBONE.NAME pocket, CLIP_WEIGHTS=pocket)
# The pocket world's data folder, <cache>/pocket/v<VERSION>-<digest>/data (ptnl.pocket.world_dir), as
# a run's DATASET.ROOT names it.
POCKET_ROOT_RE = re.compile(r"(^|[\\/])pocket[\\/]v\d+-[0-9a-f]+[\\/]data[\\/]?$")
# How train.py's log ends a run whose loss became infinite or NaN (Dassl's detect_anomaly).
DIVERGED_RE = re.compile(r"FloatingPointError|infinite or NaN|Training diverged", re.IGNORECASE)


# What a trainer's class declares about its runs, read from its source (ptnl.io.trainer_classes, PTNL_PLUGINS
# included); a trainer whose class is not found (a CoOp fork's) uses a loss and seeds and trains by epochs.
def loss_free(trainer: Optional[str]) -> bool:
    """TRAINER.PTNL.LOSS steers nothing in ``trainer``'s runs (its class says ``USES_LOSS = False``:
    nothing trained by a loss, or the method's own losses whatever it says): tables and legends show
    no loss for them."""
    return declared("USES_LOSS", True).get(trainer, True) is False


def seed_free(trainer: Optional[str]) -> bool:
    """Nothing in ``trainer``'s runs depends on the seed (``USES_SEED = False``): one seed is the whole story."""
    return declared("USES_SEED", True).get(trainer, True) is False


def epoch_free(trainer: Optional[str]) -> bool:
    """``trainer`` has no epoch loop (``TRAINS = False``): OPTIM.MAX_EPOCH says nothing about its runs."""
    return declared("TRAINS", True).get(trainer, True) is False


def run_status(run_dir: str) -> Tuple[Optional[str], Optional[Dict]]:
    """("done", None) with results.json; ("evaluation", None) for a ``train.py --eval-only`` folder
    (``evaluation.json``); ("log", info) for a log-only run that finished and tested (a CoOp/Dassl
    run); ("incomplete", info) otherwise; (None, None) for no run at all."""
    if osp.isfile(osp.join(run_dir, RESULTS_FILE)):
        return "done", None
    if osp.isfile(osp.join(run_dir, EVALUATION_FILE)):
        return "evaluation", None
    if not log_files(run_dir):
        return None, None
    info = parse_log(run_dir)
    return ("log" if info["finished"] and info["accuracy"] is not None else "incomplete"), info


def find_runs(dirs: Iterable[str]) -> Tuple[List[str], List[str]]:
    """Every run folder under ``dirs``, as (finished, incomplete) lists of folders. Finished: a
    folder holding ``results.json``, or a CoOp-style ``log.txt`` that reached the end of training
    and printed a test accuracy after it. Incomplete: a folder with a log but neither. Evaluation
    folders (``train.py --eval-only``, ``evaluation.json``) are neither.

    Args:
        dirs: folders to search, recursively: a run folder's sub-folders are searched too (a stray or
            failed run's log at the top of an output tree hides nothing); its checkpoint folders
            hold neither a log nor results.json, so they are never runs.
    """
    done, incomplete, seen = [], [], set()
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if RESULTS_FILE not in filenames and not any(LOG_RE.match(n) for n in filenames):
                continue
            real = osp.realpath(dirpath)
            if real in seen:
                continue
            seen.add(real)
            status, _ = run_status(dirpath)
            if status in ("done", "log"):
                done.append(dirpath)
            elif status == "incomplete":
                incomplete.append(dirpath)
    return sorted(done), sorted(incomplete)


def _fields_from_config(conf):
    """Grouping fields from a printed config (PTNL's keys, or CoOp's TRAINER.<NAME>.* ones)."""
    out = {}
    pairs = {"dataset": "DATASET.NAME", "trainer": "TRAINER.NAME", "backbone": "MODEL.BACKBONE.NAME",
             "num_shots": "DATASET.NUM_SHOTS", "noise_type": "DATASET.NOISE.TYPE",
             "noise_mode": "DATASET.NOISE.MODE", "noise_rate": "DATASET.NOISE.RATE", "loss": "TRAINER.PTNL.LOSS"}
    for field, key in pairs.items():
        if conf.get(key) not in (None, ""):
            out[field] = conf[key]
    if isinstance(conf.get("SEED"), int) and conf["SEED"] >= 0:
        out["seed"] = conf["SEED"]
    trainer = str(out.get("trainer", "")).upper()
    for field, key in (("n_ctx", "N_CTX"), ("csc", "CSC"), ("ctp", "CLASS_TOKEN_POSITION"),
                       ("ctx_init", "CTX_INIT")):
        for prefix in ("TRAINER.{}.".format(trainer), "TRAINER.PTNL."):
            if prefix + key in conf:
                out[field] = conf[prefix + key]
                break
    if out.get("loss") == "gce" and "TRAINER.PTNL.GCE_Q" in conf:
        out["gce_q"] = conf["TRAINER.PTNL.GCE_Q"]
    return out


def _log_record(run_dir, info):
    """A finished log-only run: fields from its printed config, else from its folder names."""
    from_path = parse_run_path(run_dir)
    from_config = _fields_from_config(info["config"])
    r = {k: None for k in GROUP_KEYS + ("seed",)}
    for k in r:
        r[k] = from_config.get(k, from_path.get(k))
    r["variant"] = from_path.get("variant")
    r.update(accuracy=info["accuracy"], source="log", end_line=info["end_line"], log=info["log"],
             unknown=[k for k in IDENTITY_KEYS if r[k] is None])
    _add_derived(r, info["config"])
    return r


def run_settings(record: Dict, config: Optional[Dict] = None) -> Dict:
    """The ``RUN_SETTINGS`` of a run as recorded (None: not recorded): epochs (OPTIM.MAX_EPOCH, else
    the last epoch record; left out for trainers without epochs), weights (MODEL.BACKBONE.NAME),
    engine (name and version), DATALOADER.RANDOMNESS and the precision the run computed in."""
    config = config or {}
    out = {}
    if not epoch_free(record.get("trainer")):
        epochs = config.get("OPTIM.MAX_EPOCH")
        if epochs is None and record.get("epochs"):
            epochs = max((e.get("epoch", 0) for e in record["epochs"] if isinstance(e, dict)), default=None)
        out["epochs"] = epochs
    out["weights"] = record.get("backbone")
    engine = record.get("engine")
    if isinstance(engine, dict):
        engine = " ".join(str(engine[k]) for k in ("name", "version") if engine.get(k)) or None
    out["engine"] = engine
    out["randomness"] = record.get("randomness") or config.get("DATALOADER.RANDOMNESS")
    out["precision"] = record.get("precision")  # the one it ran (fp32 on CPU whatever TRAINER.PTNL.PREC says)
    return out


def pocket_world(record: Dict, config: Optional[Dict] = None) -> bool:
    """Whether a run's dataset is the pocket world's (``ptnl.pocket``): its DATASET.ROOT is the
    pocket world's data folder, or, where the root is not recorded, it ran the pocket weights."""
    root = (config or {}).get("DATASET.ROOT")
    if root:
        return bool(POCKET_ROOT_RE.search(str(root)))
    return record.get("backbone") == POCKET_WEIGHTS


def divergence(record: Dict) -> Optional[str]:
    """Why a finished run's numbers cannot be averaged (a test accuracy or an epoch's loss that is
    not finite), or None."""
    acc = record.get("accuracy")
    if isinstance(acc, (int, float)) and not math.isfinite(acc):
        return "test accuracy {}".format(acc)
    for e in record.get("epochs") or ():
        loss = e.get("loss") if isinstance(e, dict) else None
        if isinstance(loss, (int, float)) and not math.isfinite(loss):
            return "loss {} at epoch {}".format(loss, e.get("epoch", "?"))
    return None


def _add_derived(r, config):
    """The fields tables derive from a record: ``run_settings``, ``pocket_world``, ``classes``
    (how many; None: not recorded), ``diverged`` (``divergence``)."""
    r["run_settings"] = run_settings(r, config)
    r["pocket_world"] = pocket_world(r, config)
    names = r.get("classnames")
    r["classes"] = len(names) if isinstance(names, list) and len(names) > 1 else None
    r["diverged"] = divergence(r)


def load_run(run_dir: str) -> Dict:
    """One finished run as a flat record: ``results.json`` when present, else what its CoOp-style
    log says (``source`` tells which; ``unknown`` lists the identity fields a log did not give).

    Args:
        run_dir: a finished run folder (``find_runs``); ``ValueError`` for an unfinished one.
    """
    path = osp.join(run_dir, RESULTS_FILE)
    if osp.isfile(path):
        with open(path) as f:
            r = json.load(f)
        if not isinstance(r, dict) or not isinstance(r.get("accuracy"), (int, float)):
            raise ValueError("{} has no numeric 'accuracy'".format(path))
        noise = r.get("noise") or {}
        r["noise_type"], r["noise_mode"], r["noise_rate"] = noise.get("type"), noise.get("mode"), noise.get("rate")
        prompt = r.get("prompt") or {}
        r["n_ctx"], r["csc"] = prompt.get("n_ctx"), prompt.get("csc")
        r["ctp"], r["ctx_init"] = prompt.get("class_token_position"), prompt.get("ctx_init")
        r.setdefault("gce_q", None)
        r["variant"] = parse_run_path(run_dir).get("variant")
        r.setdefault("config", None)
        r.setdefault("config_sections", None)  # the TRAINER.<S>. sections its trainer reads, where recorded
        if isinstance(r["config"], dict):  # recomputed: the digest of this version, whatever wrote the file
            r["settings_digest"] = settings_digest(r["config"], r["config_sections"], r.get("config_defaults"))
        r.setdefault("settings_digest", None)  # absent: written before per-key config records
        r.setdefault("loss_options", None)  # {CFG_KEY: {"value": v, "default": d}} of the run's loss, where recorded
        r["source"], r["unknown"] = RESULTS_FILE, []
        _add_derived(r, r["config"] if isinstance(r["config"], dict) else None)
    else:
        status, info = run_status(run_dir)
        if status != "log":
            raise ValueError("{}: not a finished run ({})".format(run_dir, incomplete_run(run_dir, info)["reason"]))
        r = _log_record(run_dir, info)
    r["run_dir"] = run_dir
    return r


def incomplete_run(run_dir: str, info: Optional[Dict] = None, reason: Optional[str] = None) -> Dict:
    """An unfinished (or unreadable) run: where it is, its seed and settings when they can be
    told, and why it does not count."""
    if info is None and reason is None:
        info = parse_log(run_dir) if log_files(run_dir) else None
    r = {k: None for k in GROUP_KEYS + ("seed",)}
    r.update(parse_run_path(run_dir))
    if info:
        r.update(_fields_from_config(info["config"]))
    if reason is None:
        if info and info["finished"]:
            reason = "'{}' in {} but no '* accuracy:' line after it (the test crashed, or TEST.NO_TEST)".format(
                info["end_line"], osp.basename(info["log"]))
        elif info and info.get("stopped") and info["stopped"][0] == "error" and DIVERGED_RE.search(info["stopped"][1]):
            r["diverged"] = info["stopped"][1]
            reason = "diverged: {}{}".format(info["stopped"][1], "; last epoch logged {}/{}".format(
                *info["last_epoch"]) if info.get("last_epoch") else "")
        elif info and info.get("stopped") and info["stopped"][0] == "error":
            reason = "failed: {}".format(info["stopped"][1])
        elif info and info.get("stopped"):
            reason = "interrupted at epoch {}".format(info["stopped"][1])
        else:
            reason = "no results.json and no end-of-training line ({}): running, interrupted or crashed".format(
                " / ".join(END_LINES))
            if info and info["last_epoch"]:
                reason += "; last epoch logged {}/{}".format(*info["last_epoch"])
            if info and info["logs"]:
                reason += "; log last written {} ago".format(ago(time.time() - osp.getmtime(info["logs"][-1])))
    r.setdefault("diverged", None)
    r.update(run_dir=run_dir, reason=reason)
    return r


def diverged_run(record: Dict) -> Dict:
    """A finished run whose numbers are not finite (``record["diverged"]``) as an unfinished one:
    listed, never averaged."""
    r = {k: record.get(k) for k in GROUP_KEYS + ("seed",)}
    r.update(run_dir=record["run_dir"], diverged=record["diverged"],
             reason="diverged: {} in {}".format(record["diverged"], RESULTS_FILE))
    return r
