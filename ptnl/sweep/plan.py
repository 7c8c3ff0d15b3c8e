"""The plan of a grid: the runs the scripts list (``scripts/ptnl/lib.sh``; ``main.sh`` writes each
run's ``train.py`` command line), saved under ``<OUT>/.sweep/<name>.json``, what the run folders
say about each run (finished, checkpoint to resume from, failed, interrupted) and what train.py's
own checks say about it (``train_checks``: a finished run's stored settings against the requested
ones, a dry run's checks)."""
import glob
import hashlib
import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from ptnl.io import write_json_atomic
from ptnl.runs.files import RESULTS_FILE
from ptnl.runs.identity import differing_keys
from ptnl.runs.layout import folder_key_override

SWEEP_DIR = ".sweep"
DIRS_TOKEN = "{dirs}"  # in a report command: the plan's run folders that exist
# train.py's checks over many runs in one process (next to train.py, in the plan's folder)
CHECKER = osp.join("scripts", "ptnl", "check_settings.py")


class PlanError(ValueError):
    """A plan that cannot be made or saved: one line for the user, no traceback."""


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


def plan_digest(runs: List[Dict]) -> str:
    """8 hex digits of the runs' folders and command lines: the same grid with the same options
    gets the same name on every call (a second call finds its submissions); other options (another
    OPTIM.MAX_EPOCH) make another plan, not an overwritten one."""
    text = "\n".join(r["dir"] + "\0" + json.dumps(r["argv"]) for r in runs)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def make_plan(build_file: str, *, out: str, name: str, tag: str = "", title: str = "", desc: str = "",
              nctx_label: bool = False) -> Dict:
    """A plan from the scripts' build file, named ``<name>-<plan_digest>``. ``PlanError`` when a
    run's trailing options override what its folder name encodes (``folder_key_override``)."""
    plan = read_build_file(build_file)
    for r in plan["runs"]:
        why = folder_key_override(r.get("opts") or [])
        if why:
            raise PlanError(why)
    name = re.sub(r"[^A-Za-z0-9_.+-]", "-", name).strip("-") or "plan"
    plan.update(name="{}-{}".format(name, plan_digest(plan["runs"])), out=osp.abspath(out), tag=tag, title=title,
                desc=desc, nctx_label=nctx_label, cwd=os.getcwd())
    return plan


def out_problem(out: str) -> str:
    """Why nothing can be written to ``<out>/.sweep`` (a file in the way, a folder this user cannot
    write), else ""; checked by dry runs too, without writing."""
    p = osp.abspath(sweep_dir(out))
    while not osp.exists(p) and osp.dirname(p) != p:
        p = osp.dirname(p)
    if not osp.isdir(p):
        return "OUT={} cannot hold the runs: {} is a file, not a folder; set OUT to a folder".format(out, p)
    if not os.access(p, os.W_OK | os.X_OK):
        return "OUT={} cannot be written: {} is not writable for this user; set OUT to a folder you can write".format(
            out, p)
    return ""


def plan_path(plan: Dict) -> str:
    return osp.join(sweep_dir(plan["out"]), plan["name"] + ".json")


def save_plan(plan: Dict) -> str:
    path = plan_path(plan)
    why = out_problem(plan["out"])
    if why:
        raise PlanError(why)
    try:
        os.makedirs(osp.dirname(path), exist_ok=True)
        write_json_atomic(path, plan)
    except OSError as e:
        raise PlanError("OUT={} cannot hold the plan {}: {}; set OUT to a folder you can write".format(
            plan["out"], path, e.strerror or e)) from None
    return path


def discard_plan(plan: Dict) -> bool:
    """Remove a plan that left nothing behind (no run folder, no SLURM job) with its group and
    submission files: a command rejected before any run started is not a plan ``status`` lists for
    good."""
    if any(osp.isdir(r["dir"]) for r in plan["runs"]):
        return False
    folder = sweep_dir(plan["out"])
    try:
        with open(osp.join(folder, "jobs.jsonl")) as f:
            if any(json.loads(ln).get("plan") == plan["name"] for ln in f if ln.strip()):
                return False
    except (OSError, ValueError):
        pass
    name = glob.escape(plan["name"])
    for p in [plan_path(plan), osp.join(folder, plan["name"] + ".sbatch")] + \
            glob.glob(osp.join(folder, "groups", name + "-*.json")) + \
            glob.glob(osp.join(folder, "submissions", name + "-*.json")):
        try:
            os.remove(p)
        except OSError:
            pass
    for d in [osp.join(folder, sub) for sub in ("groups", "submissions", "logs")] + [folder]:  # if now empty
        try:
            os.rmdir(d)
        except OSError:
            pass
    return True


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
    """train.py on a finished run compares its settings: (0, "Done already: DIR") for the same ones,
    else (its exit code, its message)."""
    proc = subprocess.run(run["argv"], capture_output=True, text=True, env=env)
    msg = (proc.stdout + proc.stderr).strip()
    return proc.returncode, msg


def _answer(code, stdout="", stderr=""):
    return {"code": code, "stdout": stdout, "stderr": stderr}


def train_checks(runs: Sequence[Dict], dry: Sequence[bool], cwd: Optional[str] = None) -> List[Dict]:
    """train.py's own answer for each run, as ``{"code", "stdout", "stderr"}``: a finished run
    (``dry`` False) gets its settings check (code 0: the same settings, "Done already"; 3: other
    settings, the message names each key; see ``differing_keys``), a run to check (``dry`` True)
    train.py's ``--dry-run`` checks. One process per Python of the plan
    (``scripts/ptnl/check_settings.py`` runs ``ptnl.cli.runner.prepare`` on each); where that process does not
    answer (a PYTHON wrapper that only runs train.py), each run's own train.py is asked."""
    answers: List[Optional[Dict]] = [None] * len(runs)
    by_python: Dict[tuple, List[int]] = {}
    for i, r in enumerate(runs):
        by_python.setdefault(tuple(r["argv"][:2]), []).append(i)
    for (python, train_py), idx in by_python.items():
        checker = osp.join(osp.dirname(osp.abspath(osp.join(cwd or ".", train_py))), CHECKER)
        if osp.isfile(checker):
            tmp = tempfile.mkdtemp(prefix="ptnl-checks-")
            try:
                req, ans = osp.join(tmp, "requests.json"), osp.join(tmp, "answers.json")
                write_json_atomic(req, [{"argv": runs[i]["argv"], "dry": bool(dry[i])} for i in idx])
                subprocess.run([python, checker, req, ans], cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    with open(ans) as f:
                        got = json.load(f)
                except (OSError, ValueError):
                    got = None
                if isinstance(got, list) and len(got) == len(idx):
                    for i, a in zip(idx, got):
                        answers[i] = a
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        for i in idx:
            if answers[i] is not None:
                continue
            argv = runs[i]["argv"]
            if dry[i]:
                argv = argv[:2] + ["--dry-run"] + argv[2:]
            proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
            answers[i] = _answer(proc.returncode, proc.stdout, proc.stderr)
    return answers


def settings_state(answer: Dict) -> str:
    """"done" (train.py would skip it: same settings), "differ" (it would stop, exit 3) or "error"."""
    code = answer["code"]
    return "done" if code in (0, None) else "differ" if code == 3 else "error"


def answer_text(answer: Dict) -> str:
    return (answer.get("stdout", "") + answer.get("stderr", "")).strip()


def differences(answer: Dict) -> str:
    """A finished run's settings check in one line: the differing keys with stored and requested
    values, or train.py's message's first line (an error, or a run that predates per-key records)."""
    keys = differing_keys(answer.get("stderr", "") + answer.get("stdout", ""))
    if keys:
        return "; ".join("{} stored {}, requested {}".format(*k) for k in keys)
    lines = [ln for ln in answer_text(answer).splitlines() if ln.strip()]
    err = [ln for ln in lines if ln.startswith("Error:")]
    return (err or lines or ["train.py exit {}".format(answer["code"])])[-1 if err else 0]


def check_plan(plan: Dict, dry_todo: bool = False) -> Dict[int, Dict]:
    """{run index: train.py's answer} for the plan's finished runs (their settings check) and, with
    ``dry_todo``, its other runs (the dry run's checks)."""
    idx = [i for i, r in enumerate(plan["runs"]) if dry_todo or finished(r)]
    if not idx:
        return {}
    answers = train_checks([plan["runs"][i] for i in idx], [not finished(plan["runs"][i]) for i in idx],
                           cwd=plan.get("cwd"))
    return dict(zip(idx, answers))


def stop_child(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """After a Ctrl-C: give ``proc`` ``grace`` seconds to end on the terminal's SIGINT, then send
    it one (a SIGINT sent to this process alone did not reach it), then kill it after a minute."""
    try:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    except (KeyboardInterrupt, subprocess.TimeoutExpired, OSError):
        pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()


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
    """The grids' "[TAG] run k/N [###...] d/N done, elapsed, ETA" line: k counts the runs in the order
    they start (after the ones finished before, so grouped runs count 1, 2, 3 however the plan lists
    them); the ETA is the mean time of this session's runs per trainer (of all of them for a trainer
    not run yet) times the runs not started yet, this one included, divided among the workers."""

    def __init__(self, plan: Dict, workers: int = 1):
        self.plan, self.workers, self.start = plan, max(1, workers), time.time()
        self.spent, self.count = {}, {}
        self.total = len(plan["runs"])
        self.finished = [finished(r) for r in plan["runs"]]
        self.numbers: Dict[int, int] = {}  # run index -> its k in the progress lines
        self.before = sum(self.finished)
        self.attempted = set()

    @property
    def done(self):
        return sum(self.finished)

    def number(self, i: int) -> int:
        """Run ``i``'s place in the order runs start (numbered on first use)."""
        if i not in self.numbers:
            self.numbers[i] = self.before + len(self.numbers) + 1
        return self.numbers[i]

    def record(self, i: int, seconds: float, ok: bool):
        t = self.plan["runs"][i]["trainer"]
        self.spent[t] = self.spent.get(t, 0) + seconds
        self.count[t] = self.count.get(t, 0) + 1
        self.attempted.add(i)
        if ok:
            self.finished[i] = True

    def line(self, i: int, what: str) -> str:
        width = 24
        filled = self.done * width // max(self.total, 1)
        all_s, all_n = sum(self.spent.values()), sum(self.count.values())
        eta, known = 0.0, 0
        for j in range(self.total):
            if self.finished[j] or j in self.attempted:
                continue
            t = self.plan["runs"][j]["trainer"]
            if self.count.get(t):
                eta += self.spent[t] / self.count[t]; known += 1
            elif all_n:
                eta += all_s / all_n; known += 1
        eta_s = "ETA {}".format(hms(eta / self.workers)) if known else "ETA after the first run"
        return "[{}] run {}/{} [{}{}] {}/{} done, elapsed {}, {}: {}".format(
            self.plan["tag"], self.number(i), self.total, "#" * filled, "." * (width - filled), self.done, self.total,
            hms(time.time() - self.start), eta_s, what)
