"""``python -m ptnl.sweep status OUT``: per plan under ``OUT/.sweep``, how many runs are done,
running, queued (what ``squeue`` holds), failed (with the line that says why) and missing."""
import os.path as osp
import sys
from typing import Dict, List

from ptnl.runs.read import incomplete_run
from ptnl.runs.logs import log_files, parse_log
from ptnl.sweep.engines import error_line
from ptnl.sweep.plan import finished, load_plan, plans_under
from ptnl.sweep.slurm import queued_runs, task_logs

RUNNING = ("RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING")


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


def plan_status(plan: Dict, held: Dict, logs: Dict) -> Dict[str, List]:
    states = {k: [] for k in ("done", "running", "queued", "failed", "missing")}
    for r in plan["runs"]:
        d = r["dir"]
        if finished(r):
            states["done"].append((d, ""))
        elif d in held:
            state, jt = held[d]
            states["running" if state in RUNNING else "queued"].append((d, "job {} {}".format(jt, state)))
        elif osp.isdir(d) or (d in logs and osp.isfile(logs[d])):
            states["failed"].append((d, why_failed(d, logs.get(d))))
        else:
            states["missing"].append((d, ""))
    return states


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
    for path in paths:
        plan = load_plan(path)
        st = plan_status(plan, held, logs)
        print("{} ({} runs): {}".format(plan["name"], len(plan["runs"]),
                                        ", ".join("{} {}".format(len(v), k) for k, v in st.items())))
        for k in ("running", "queued", "failed"):
            for d, why in st[k]:
                print("  {}: {}: {}".format(k, d, why))
    return 0
