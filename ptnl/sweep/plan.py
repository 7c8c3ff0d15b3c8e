"""The plan of a grid: the runs the scripts list (``scripts/ptnl/lib.sh``; ``main.sh`` writes each
run's ``train.py`` command line), saved under ``<OUT>/.sweep/<name>.json``, and what the run
folders say about each run (finished, checkpoint to resume from, failed)."""
import glob
import hashlib
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional

from ptnl.io import write_json_atomic
from ptnl.runs.files import RESULTS_FILE

SWEEP_DIR = ".sweep"
DIRS_TOKEN = "{dirs}"  # in a report command: the plan's run folders that exist


def sweep_dir(out: str) -> str:
    return osp.join(out, SWEEP_DIR)


def read_build_file(path: str) -> Dict:
    """The records the scripts append (one JSON object a line: {"run": {...}} or {"report": [...]})."""
    runs, reports = [], []
    with open(path) as f:
        for ln in f:
            if not ln.strip():
                continue
            rec = json.loads(ln)
            if "run" in rec:
                runs.append(rec["run"])
            elif "report" in rec:
                reports.append(rec["report"])
    return {"runs": runs, "reports": reports}


def make_plan(build_file: str, *, out: str, name: str, tag: str = "", title: str = "", desc: str = "",
              nctx_label: bool = False) -> Dict:
    """A plan from the scripts' build file, named ``<name>-<8 hex of its run folders>`` (the same
    grid gets the same name on every call, so a second call finds its submissions)."""
    plan = read_build_file(build_file)
    digest = hashlib.sha1("\n".join(r["dir"] for r in plan["runs"]).encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.+-]", "-", name).strip("-") or "plan"
    plan.update(name="{}-{}".format(name, digest), out=osp.abspath(out), tag=tag, title=title, desc=desc,
                nctx_label=nctx_label, cwd=os.getcwd())
    return plan


def save_plan(plan: Dict) -> str:
    path = osp.join(sweep_dir(plan["out"]), plan["name"] + ".json")
    os.makedirs(osp.dirname(path), exist_ok=True)
    write_json_atomic(path, plan)
    return path


def load_plan(path: str) -> Dict:
    with open(path) as f:
        return json.load(f)


def plans_under(out: str) -> List[str]:
    return sorted(glob.glob(osp.join(sweep_dir(out), "*.json")))


def label(plan: Dict, run: Dict) -> str:
    if plan.get("nctx_label"):
        return "{trainer} n_ctx {nctx} {loss} rate {rate} shots {shots} seed {seed}".format(**run)
    return "{trainer} {loss} rate {rate} shots {shots} seed {seed}".format(**run)


def finished(run: Dict) -> bool:
    return osp.isfile(osp.join(run["dir"], RESULTS_FILE))


def last_checkpoint(run_dir: str) -> Optional[int]:
    epochs = [int(m.group(1)) for p in glob.glob(osp.join(run_dir, "*", "model.pth.tar-*"))
              for m in [re.search(r"model\.pth\.tar-(\d+)$", p)] if m]
    return max(epochs) if epochs else None


def start_line(run: Dict) -> str:
    """main.sh's line before a run: Resuming (from its newest checkpoint), Retrying or Running."""
    d = run["dir"]
    if osp.isdir(d):
        e = last_checkpoint(d)
        return "Resuming: {} (from epoch {})".format(d, e) if e is not None else "Retrying: {}".format(d)
    return "Running: {}".format(d)


def check_finished(run: Dict, env=None):
    """train.py on a finished run compares its settings: (True, "") when they are the same ("Done
    already"), else (False, its message) with its exit code."""
    proc = subprocess.run(run["argv"], capture_output=True, text=True, env=env)
    msg = (proc.stdout + proc.stderr).strip()
    return proc.returncode, msg


def wall_time(run: Dict) -> Optional[float]:
    try:
        with open(osp.join(run["dir"], RESULTS_FILE)) as f:
            t = json.load(f).get("wall_time_s")
        return float(t) if t is not None else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def gpu_hours_estimate(runs: List[Dict], todo: List[Dict]):
    """(hours, how many finished runs it rests on): the todo runs at the mean wall_time_s of the
    finished runs of their trainer (of all finished runs for a trainer with none), else None."""
    by = {}
    for r in runs:
        t = wall_time(r) if finished(r) else None
        if t is not None:
            by.setdefault(r["trainer"], []).append(t)
    known = [t for ts in by.values() for t in ts]
    if not known:
        return None, 0
    total = 0.0
    for r in todo:
        ts = by.get(r["trainer"]) or known
        total += sum(ts) / len(ts)
    return total / 3600.0, len(known)


def hms(s: float) -> str:
    s = int(s)
    return "{:d}:{:02d}:{:02d}".format(s // 3600, s % 3600 // 60, s % 60)


def report_dirs(plan: Dict) -> List[str]:
    return [r["dir"] for r in plan["runs"] if osp.isdir(r["dir"])]


def run_reports(plan: Dict) -> int:
    """The plan's closing commands ({dirs}: its run folders that exist), from the folder it was built in."""
    if not plan["reports"]:
        return 0
    print(flush=True)
    dirs = report_dirs(plan)
    for argv in plan["reports"]:
        if DIRS_TOKEN in argv:
            if not dirs:
                print("[{}] no runs to summarise".format(plan.get("tag") or "main"), file=sys.stderr, flush=True)
                return 1
            i = argv.index(DIRS_TOKEN)
            argv = argv[:i] + dirs + argv[i + 1:]
        rc = subprocess.call(argv, cwd=plan["cwd"])
        if rc:
            return rc
    return 0


class Progress:
    """The grids' "[TAG] run i/N [###...] d/N done, elapsed, ETA" line: the ETA is the mean time of
    this session's runs per trainer (of all of them for a trainer not run yet) times the runs left,
    divided among the workers."""

    def __init__(self, plan: Dict, workers: int = 1):
        self.plan, self.workers, self.start = plan, max(1, workers), time.time()
        self.spent, self.count = {}, {}
        self.total = len(plan["runs"])
        self.finished = [finished(r) for r in plan["runs"]]

    @property
    def done(self):
        return sum(self.finished)

    def record(self, i: int, seconds: float, ok: bool):
        t = self.plan["runs"][i]["trainer"]
        self.spent[t] = self.spent.get(t, 0) + seconds
        self.count[t] = self.count.get(t, 0) + 1
        if ok:
            self.finished[i] = True

    def line(self, i: int, what: str) -> str:
        width = 24
        filled = self.done * width // max(self.total, 1)
        all_s, all_n = sum(self.spent.values()), sum(self.count.values())
        eta, known = 0.0, 0
        for j in range(i, self.total):
            if self.finished[j]:
                continue
            t = self.plan["runs"][j]["trainer"]
            if self.count.get(t):
                eta += self.spent[t] / self.count[t]; known += 1
            elif all_n:
                eta += all_s / all_n; known += 1
        eta_s = "ETA {}".format(hms(eta / self.workers)) if known else "ETA after the first run"
        return "[{}] run {}/{} [{}{}] {}/{} done, elapsed {}, {}: {}".format(
            self.plan["tag"], i + 1, self.total, "#" * filled, "." * (width - filled), self.done, self.total,
            hms(time.time() - self.start), eta_s, what)
