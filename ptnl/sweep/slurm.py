"""SLURM: a plan's unfinished runs that are neither queued nor running as ``sbatch --array`` jobs
(chunks of at most ``MaxArraySize`` tasks, each with its index offset into the submission file; runs
that share a data stream are one task, ``train.py --group``, as under the local engines), the
summary job (``--dependency=afterany``), and what ``squeue`` says about the runs submitted."""
import getpass
import json
import os
import os.path as osp
import shlex
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Tuple

from ptnl.io import atomic_write, write_json_atomic
from ptnl.sweep.engines import header, register_executor, units
from ptnl.sweep.plan import check_plan, differences, finished, gpu_hours_estimate, run_reports, settings_state, sweep_dir

# one line per array job: {"job", "plan", "dirs" (per task index: a run folder, or a group's list), "logs"}
JOBS_FILE = "jobs.jsonl"
DEFAULT_MAX_ARRAY_SIZE = 1001


class SlurmError(RuntimeError):
    """sbatch or squeue refused (no configuration, an invalid partition, ...): one line for the user."""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


def max_array_size() -> int:
    """``MaxArraySize`` of ``scontrol show config`` (task indices 0 .. MaxArraySize-1)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return DEFAULT_MAX_ARRAY_SIZE
    for ln in out.splitlines():
        k, _, v = ln.partition("=")
        if k.strip() == "MaxArraySize":
            try:
                return int(v.strip())
            except ValueError:
                break
    return DEFAULT_MAX_ARRAY_SIZE


def job_records(out: str) -> List[Dict]:
    path = osp.join(sweep_dir(out), JOBS_FILE)
    if not osp.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def squeue_tasks() -> Dict[Tuple[str, int], str]:
    """{(array job id, task index): state} of this user's array tasks, from ``squeue -r``."""
    if shutil.which("squeue") is None:
        return {}
    # %i is "<array job>_<task>" for every array task with -r (%A is a started task's own job id)
    proc = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode:
        raise SlurmError("squeue failed (exit {}): {}".format(proc.returncode, _last_line(proc.stderr)))
    tasks = {}
    for ln in proc.stdout.splitlines():
        jt, _, state = ln.strip().partition("|")
        job, _, task = jt.partition("_")
        if task.isdigit():
            tasks[(job, int(task))] = state
    return tasks


def queued_runs(out: str) -> Dict[str, Tuple[str, str]]:
    """{run folder: (state, "job_task")} of the runs submitted from ``out`` that SLURM still holds."""
    records, held = job_records(out), {}
    tasks = squeue_tasks() if records else {}
    for rec in records:
        for k, dirs in enumerate(rec["dirs"]):
            state = tasks.get((str(rec["job"]), k))
            if state is not None:
                for d in task_dirs(dirs):
                    held[d] = (state, "{}_{}".format(rec["job"], k))
    return held


def task_dirs(entry) -> List[str]:
    """The run folders of one task's ``dirs`` entry (one folder, or a group's list)."""
    return [entry] if isinstance(entry, str) else list(entry)


def task_logs(out: str) -> Dict[str, str]:
    """{run folder: the SLURM output file of its newest task}."""
    logs = {}
    for rec in job_records(out):
        for k, dirs in enumerate(rec["dirs"]):
            for d in task_dirs(dirs):
                logs[d] = rec["logs"].replace("%A", str(rec["job"])).replace("%a", str(k))
    return logs


def _sbatch(cmd: List[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode:
        what = next((c for c in cmd if c.startswith(("--array=", "--dependency="))), "")
        raise SlurmError("sbatch {}failed (exit {}): {}".format(what + " " if what else "", proc.returncode,
                                                            _last_line(proc.stderr)))
    return proc.stdout.strip().split(";")[0]


def submit(plan: Dict, plan_path: str, *, dry: bool = False, answers: Dict = None) -> int:
    """Submit the plan's runs that are neither finished nor held by SLURM; print what was done.
    A finished run whose stored settings differ (train.py's check, ``answers`` when given) stops the
    submission (exit 3), as it stops the local engine."""
    tag, out = plan.get("tag") or "main", plan["out"]
    held = queued_runs(out)
    runs = plan["runs"]
    answers = check_plan(plan) if answers is None else answers
    differ = [i for i, r in enumerate(runs) if finished(r) and settings_state(answers.get(i, {"code": 0})) != "done"]
    todo_idx = [i for i, r in enumerate(runs) if not finished(r) and r["dir"] not in held]
    todo = [runs[i] for i in todo_idx]
    done = sum(finished(r) for r in runs) - len(differ)
    print("[{}] plan {}: {} runs: {} done,{} {} queued or running, {} to submit".format(
        tag, plan["name"], len(runs), done, " {} with other settings,".format(len(differ)) if differ else "",
        len(held.keys() & {r["dir"] for r in runs}), len(todo)), flush=True)
    if differ and not dry:
        for i in differ:
            print("[{}] settings differ: {}: {}".format(tag, runs[i]["dir"], differences(answers[i])), file=sys.stderr)
        print("[{}] nothing submitted: these finished runs hold other settings (keep both with another OUT or "
              "VARIANT; delete a run folder to replace it)".format(tag), file=sys.stderr, flush=True)
        return 3
    args = shlex.split(os.environ.get("SBATCH_ARGS", ""))
    gres = [] if any(a.startswith("--gres") for a in args) else ["--gres=gpu:1"]
    size, par = max_array_size(), os.environ.get("MAX_PARALLEL", "").strip()
    logs = osp.join(sweep_dir(out), "logs")
    if not todo:
        if held:
            print("[{}] nothing to submit; python -m ptnl.sweep status {} follows them".format(tag, out))
            return 0
        return run_reports(plan)
    position = {i: k for k, i in enumerate(todo_idx)}
    tasks = [([position[i] for i in members], argv) for members, argv in units(plan, todo_idx, write=not dry)]
    chunks = [(off, tasks[off:off + size]) for off in range(0, len(tasks), size)]
    sub_path = osp.join(sweep_dir(out), "submissions",
                        "{}-{}.json".format(plan["name"], time.strftime("%Y%m%d-%H%M%S")))
    script = osp.join(sweep_dir(out), plan["name"] + ".sbatch")
    job_name = "ptnl-" + plan["name"]
    array_cmds = []
    for off, chunk in chunks:
        array = "0-{}".format(len(chunk) - 1) + ("%" + par if par else "")
        array_cmds.append(["sbatch", "--parsable", "--array=" + array, "--job-name=" + job_name,
                           "--output=" + osp.join(logs, plan["name"] + "-%A_%a.out")] + gres + args
                          + [script, sub_path, str(off)])
    if dry:
        for c in array_cmds:
            print("would submit: " + " ".join(shlex.quote(x) for x in c))
        return 0
    os.makedirs(logs, exist_ok=True)
    write_json_atomic(sub_path, {"plan": plan["name"], "cwd": plan["cwd"], "runs": todo,
                                 "tasks": [{"runs": members, "argv": argv} for members, argv in tasks]})
    text = ("#!/bin/bash\n# A PTNL sweep task: run number $2 + SLURM_ARRAY_TASK_ID of the submission file $1\n"
            "cd {}\nexec {} -m ptnl.sweep task \"$1\" $(( $2 + SLURM_ARRAY_TASK_ID ))\n".format(
                shlex.quote(plan["cwd"]), shlex.quote(sys.executable)))
    atomic_write(script, lambda f: f.write(text))
    jobs = []
    try:
        for (off, chunk), cmd in zip(chunks, array_cmds):
            job = _sbatch(cmd)
            jobs.append(job)
            with open(osp.join(sweep_dir(out), JOBS_FILE), "a") as f:
                dirs = [todo[m[0]]["dir"] if len(m) == 1 else [todo[j]["dir"] for j in m] for m, _ in chunk]
                f.write(json.dumps({"job": job, "plan": plan["name"], "dirs": dirs,
                                    "logs": osp.join(logs, plan["name"] + "-%A_%a.out")}) + "\n")
            if len(tasks) == len(todo):
                what = "runs {}-{} of the {} to submit".format(off + 1, off + len(chunk), len(todo))
            else:
                what = "tasks {}-{} of {}, for {} of the {} runs to submit (runs that share a data stream are " \
                       "one task)".format(off + 1, off + len(chunk), len(tasks), sum(len(m) for m, _ in chunk),
                                          len(todo))
            print("[{}] submitted array job {} ({}): {}".format(tag, job, cmd[2], what), flush=True)
        waits = sorted(set(jobs) | {jt.split("_")[0] for d, (_, jt) in held.items() if d in {r["dir"] for r in runs}})
        summary_out = osp.join(sweep_dir(out), plan["name"] + ".summary.out")
        wrap = "cd {} && exec {} -m ptnl.sweep summary {}".format(
            shlex.quote(plan["cwd"]), shlex.quote(sys.executable), shlex.quote(plan_path))
        summary = _sbatch(["sbatch", "--parsable", "--dependency=afterany:" + ":".join(waits),
                           "--job-name=" + job_name + "-summary", "--output=" + summary_out]
                          + [a for a in args if not a.startswith("--gres")] + ["--wrap", wrap])
    except SlurmError as e:
        if not jobs:  # nothing of this submission reached SLURM
            try:
                os.remove(sub_path)
            except OSError:
                pass
        print("[{}] {}; {} (check SBATCH_ARGS and the cluster's sbatch configuration; the same command "
              "submits what is left)".format(tag, e, "{} array job(s) submitted before it: {}".format(
                  len(jobs), " ".join(jobs)) if jobs else "nothing submitted"), file=sys.stderr, flush=True)
        return 1
    print("[{}] summary job {} (afterany:{}) writes the table to {}".format(tag, summary, ":".join(waits),
                                                                         summary_out))
    print("[{}] follow it: python -m ptnl.sweep status {}; the same command again resubmits what fails".format(
        tag, out), flush=True)
    return 0


def estimate_line(plan: Dict, todo: List[Dict]) -> str:
    hours, n = gpu_hours_estimate(plan["runs"], todo)
    if hours is None:
        return "GPU-hours: no finished run of this plan to estimate from yet"
    return "GPU-hours for the {} runs to run: about {:.2f} (mean wall_time_s of {} finished runs, per trainer)".format(
        len(todo), hours, n)


@register_executor("slurm",
                   unavailable=lambda: None if available() else
                   "ENGINE=slurm needs sbatch and squeue on PATH (run it on the cluster's login node)",
                   queued=queued_runs, dry_run=lambda plan, answers: submit(plan, None, dry=True, answers=answers))
def _execute_slurm(plan: Dict, plan_path: str) -> int:
    header(plan)
    return submit(plan, plan_path)
