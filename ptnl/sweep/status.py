"""``python -m ptnl.sweep status OUT``: per plan under ``OUT/.sweep``, how many runs are done,
finished with other settings than the plan asks (train.py's own check, with the keys), running,
queued (what ``squeue`` holds), interrupted (resumable), failed (with the line that says why) and
missing."""
import os.path as osp
import sys
from typing import Dict, List

from ptnl.runs.read import incomplete_run
from ptnl.runs.logs import log_files, parse_log
from ptnl.sweep.engines import error_line
from ptnl.sweep.plan import (differences, finished, last_checkpoint, load_plan, plans_under, settings_state,
                             train_checks)
from ptnl.sweep.slurm import queued_runs, task_logs

RUNNING = ("RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING")
STATES = ("done", "settings differ", "running", "queued", "interrupted", "failed", "missing")
ALWAYS_SHOWN = ("done", "running", "queued", "failed", "missing")  # the others when there are any


def why_failed(run_dir: str, slurm_log: str = None) -> str:
    """The run log's last "Error:" line, else its SLURM task log's, else why the run is incomplete."""
    if osp.isdir(run_dir) and log_files(run_dir):
        info = parse_log(run_dir)
        if info.get("stopped") and info["stopped"][0] == "error":
            return "Error: " + info["stopped"][1]
    line = error_line(slurm_log) if slurm_log else None
    if line:
        return line
    if osp.isdir(run_dir):
        return incomplete_run(run_dir)["reason"]
    return "no run folder; task log {}".format(slurm_log) if slurm_log else "no run folder"


def interrupted(run_dir: str) -> str:
    """How a run stopped by Ctrl-C (its log's newest "Interrupted at epoch" line) resumes, else ""."""
    if not (osp.isdir(run_dir) and log_files(run_dir)):
        return ""
    stopped = parse_log(run_dir).get("stopped")
    if not stopped or stopped[0] != "interrupted":
        return ""
    ckpt = last_checkpoint(run_dir)
    return "interrupted at epoch {}; resumable: the same command resumes it {}".format(
        stopped[1], "from its epoch-{} checkpoint".format(ckpt) if ckpt is not None else "from the start (no checkpoint)")


def plan_status(plan: Dict, held: Dict, logs: Dict, answers: Dict = None) -> Dict[str, List]:
    """{state: [(run folder, detail)]}; ``answers``: train.py's settings check of the finished runs
    ({run index: answer}, ``plan.train_checks``; a run without one counts as done)."""
    states = {k: [] for k in STATES}
    answers = answers or {}
    for i, r in enumerate(plan["runs"]):
        d = r["dir"]
        if finished(r):
            a = answers.get(i)
            if a is None or settings_state(a) == "done":
                states["done"].append((d, ""))
            else:
                states["settings differ"].append((d, differences(a)))
        elif d in held:
            state, jt = held[d]
            states["running" if state in RUNNING else "queued"].append((d, "job {} {}".format(jt, state)))
        elif interrupted(d):
            states["interrupted"].append((d, interrupted(d)))
        elif osp.isdir(d) or (d in logs and osp.isfile(logs[d])):
            states["failed"].append((d, why_failed(d, logs.get(d))))
        else:
            states["missing"].append((d, ""))
    return states


def settings_answers(plans: List[Dict]) -> List[Dict]:
    """train.py's settings check of every plan's finished runs, one process per plan folder."""
    out = [{} for _ in plans]
    by_cwd = {}
    for p, plan in enumerate(plans):
        for i, r in enumerate(plan["runs"]):
            if finished(r):
                by_cwd.setdefault(plan.get("cwd"), []).append((p, i))
    for cwd, keys in by_cwd.items():
        answers = train_checks([plans[p]["runs"][i] for p, i in keys], [False] * len(keys), cwd=cwd)
        for (p, i), a in zip(keys, answers):
            out[p][i] = a
    return out


def main(out: str) -> int:
    paths = plans_under(out)
    if not paths:
        print("No plans under {} (the grid scripts write them in {}/.sweep)".format(out, out), file=sys.stderr)
        return 1
    try:
        held = queued_runs(out)
    except RuntimeError as e:
        print("{} (queued and running runs not told apart)".format(e), file=sys.stderr)
        held = {}
    logs = task_logs(out)
    plans = [load_plan(path) for path in paths]
    for plan, answers in zip(plans, settings_answers(plans)):
        st = plan_status(plan, held, logs, answers)
        print("{} ({} runs): {}".format(plan["name"], len(plan["runs"]), ", ".join(
            "{} {}".format(len(v), k) for k, v in st.items() if v or k in ALWAYS_SHOWN)))
        for k in ("settings differ", "running", "queued", "interrupted", "failed"):
            for d, why in st[k]:
                print("  {}: {}: {}".format(k, d, why))
    return 0
