"""Engines that execute a plan on this machine: ``local`` (one run after another, main.sh's lines and
the grids' count and ETA), ``gpus`` (``SLOTS_PER_GPU`` runs at a time on each GPU of ``GPUS``,
``CUDA_VISIBLE_DEVICES`` set per run, a failed run reported and the others going on; both train the
runs that share a data stream as one process, ``ptnl.sweep.group``) and ``task`` (one run of a plan:
what a SLURM array element executes)."""
import os
import os.path as osp
import queue
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ptnl.registry import Registry
from ptnl.sweep import group
from ptnl.sweep.plan import (Progress, answer_text, check_plan, differences, finished, hms, label,
                             run_reports, settings_state, start_line, stop_child, sweep_dir)


EXECUTORS = Registry("sweep engine", "ENGINE", error=ValueError)


def register_executor(name: str, *, unavailable=None, queued=None, dry_run=None):
    """Decorator: register ``execute(plan, plan_path) -> exit status`` as ``ENGINE=name`` of the grid
    scripts. Optional: ``unavailable()`` -> why it cannot run on this machine (None: it can);
    ``queued(out)`` -> {run folder: (job, state)} of runs it holds, shown by plans and status;
    ``dry_run(plan, answers)`` -> exit status, what ``DRY_RUN=1`` shows beyond the plan."""
    return EXECUTORS.register(name, unavailable=unavailable, queued=queued, dry_run=dry_run)


def _say(*lines, err=False):
    for ln in lines:
        print(ln, file=sys.stderr if err else sys.stdout, flush=True)


def check_finished_runs(plan: Dict) -> Optional[int]:
    """train.py's settings check on the plan's finished runs (one process, ``plan.check_plan``):
    "Done already, skipping: DIR" for each that ran the same settings; when any holds other
    settings (or train.py rejects its command), the first one's message, one line for each other
    and main.sh's "stopped at" line, and the exit code to stop with (None when every one matches)."""
    answers = check_plan(plan)
    bad = []
    for i in sorted(answers):
        if settings_state(answers[i]) == "done":
            _say("Done already, skipping: {}".format(plan["runs"][i]["dir"]))
        else:
            bad.append(i)
    if not bad:
        return None
    first = answers[bad[0]]
    _say(answer_text(first), err=True)
    for i in bad[1:]:
        _say("  and {}: {}".format(plan["runs"][i]["dir"], differences(answers[i])), err=True)
    code = first["code"] if isinstance(first["code"], int) and first["code"] else 1
    _say("main.sh: stopped at {} (train.py exit {})".format(plan["runs"][bad[0]]["dir"], code), err=True)
    return code


def header(plan: Dict):
    if plan.get("tag"):
        p = Progress(plan)
        _say("[{}] {}: {} runs ({} done already): {}".format(plan["tag"], plan["title"], p.total, p.done,
                                                               plan["desc"]))


def command(plan: Dict, members: List[int], write: bool = True) -> Optional[List[str]]:
    """The command line that trains the plan's runs ``members`` in one process: a lone run's own,
    or ``train.py --group`` with their arguments written to ``<OUT>/.sweep/groups/`` (None without
    ``write``: nothing is written, a dry run's count)."""
    runs = plan["runs"]
    if len(members) == 1:
        return runs[members[0]]["argv"]
    if not write:
        return None
    path = osp.join(sweep_dir(plan["out"]), "groups", "{}-{}.json".format(plan.get("name", "plan"), members[0]))
    return group.group_argv(runs, members, path)


def units(plan: Dict, todo: List[int], write: bool = True) -> List[Tuple[List[int], Optional[List[str]]]]:
    """The plan's runs ``todo`` as (run indices, command line): the runs that share a data stream
    as one ``train.py --group`` process (``ptnl.sweep.group``; GROUP=0: one process a run). Without
    ``write`` nothing is written and a group's command line is None (a dry run's count)."""
    proposed = group.propose(plan["runs"], todo) if group.enabled() else [[i] for i in todo]
    return [(members, command(plan, members, write)) for members in proposed]


def local_processes(plan: Dict, todo: List[int], write: bool = True) -> List[Tuple[List[List[int]], Optional[List[str]]]]:
    """ENGINE=local's processes for the plan's runs ``todo``: (the units each trains, in order; its
    command line). A unit is a group of runs that share a data stream, or a run alone; consecutive
    units of plain training runs share one ``train.py --group`` process (``ptnl.sweep.group.pack``:
    one start-up for all of them). PACK=0: a process a unit; GROUP=0: a process a run."""
    if not group.enabled():
        return [([[i]], plan["runs"][i]["argv"]) for i in todo]
    proposed = group.propose(plan["runs"], todo)
    chunks = group.pack(plan["runs"], proposed) if group.packing() else [[unit] for unit in proposed]
    return [(chunk, command(plan, [i for unit in chunk for i in unit], write)) for chunk in chunks]


def unit_lines(plan: Dict, prog: Progress, members: List[int], where: str = "", process: int = 0) -> List[str]:
    """The progress line of each run of a unit; a group's runs say they share one data stream, and
    the runs of a process that trains more than this unit say how many others it trains."""
    runs = plan["runs"]
    others = max(0, process - len(members))
    notes = []
    if len(members) > 1:
        notes.append("1 of {} runs {}".format(len(members), "on one data stream" if others
                                              else "in one process, one data stream"))
    if others:
        notes.append("in one process with {} other run{}".format(others, "s" if others > 1 else ""))
    tail = " ({})".format(", ".join(notes)) if notes else ""
    return [prog.line(j, label(plan, runs[j]) + where + tail) for j in members]


def run_process(plan: Dict, prog: Progress, chunk: List[List[int]], argv: List[str]) -> Tuple[int, List[int]]:
    """Run one of ENGINE=local's processes, which trains the units of ``chunk`` in order: each unit's
    progress and start lines when it starts (the first at once, each next one when every run of the
    one before has its results), each run's time recorded as its unit ends. Returns the exit status
    and the runs of the unit it ended in that are not finished (none when it got through)."""
    runs, tag = plan["runs"], plan.get("tag")
    size = sum(len(unit) for unit in chunk)
    starts = {j: start_line(runs[j]) for unit in chunk for j in unit}  # each folder as it is before the process

    def announce(unit):
        if tag:
            _say(*unit_lines(plan, prog, unit, process=size))
        _say(*(starts[j] for j in unit))

    k, t0 = 0, time.time()
    announce(chunk[0])
    proc = subprocess.Popen(argv)
    try:
        while True:
            code = proc.poll()
            while k < len(chunk) and all(finished(runs[j]) for j in chunk[k]):
                now = time.time()
                for j in chunk[k]:
                    prog.record(j, (now - t0) / len(chunk[k]), True)
                k, t0 = k + 1, now
                if k < len(chunk) and code is None:
                    announce(chunk[k])
            if code is not None:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        stop_child(proc)
        raise
    if k == len(chunk):
        return code, []
    for j in chunk[k]:
        prog.record(j, (time.time() - t0) / len(chunk[k]), finished(runs[j]))
    return code, [j for j in chunk[k] if not finished(runs[j])] or chunk[k]


def run_local(plan: Dict) -> int:
    """Each run in order (finished ones first: train.py checks their settings): runs that share a
    data stream grouped, consecutive plain training runs in one process (``local_processes``;
    PACK=0: a process a group, GROUP=0: a process a run); the first failure stops the plan (the
    same command resumes it); then the plan's table."""
    header(plan)
    prog, tag = Progress(plan), plan.get("tag")
    runs = plan["runs"]
    rc = check_finished_runs(plan)
    if rc:
        return rc
    todo = [i for i in range(len(runs)) if not prog.finished[i]]
    for chunk, argv in local_processes(plan, todo):
        rc, left = run_process(plan, prog, chunk, argv)
        if rc:
            if not tag:
                return rc
            waiting = sum(1 for unit in chunk for j in unit if not finished(runs[j]) and j not in left)
            _say("[{}] run {}/{} failed: {} ({}/{} done{}; the same command resumes)".format(
                tag, prog.number(left[0]), prog.total, ", ".join(runs[j]["dir"] for j in left), prog.done,
                prog.total, ", {} more of its process not started".format(waiting) if waiting else ""), err=True)
            return 1
    if tag:
        _say("[{}] {}/{} runs done, this session {}".format(tag, prog.done, prog.total, hms(time.time() - prog.start)))
    return run_reports(plan)


def error_line(path: str) -> Optional[str]:
    """The last "Error: ..." line of a log file (None without one)."""
    try:
        with open(path, errors="replace") as f:
            errs = [ln.strip() for ln in f if ln.strip().startswith("Error:")]
    except OSError:
        return None
    return errs[-1] if errs else None


GPU_RUN_MB = 6000  # a run's (or a stacked group member's) GPU memory when GPU_RUN_MB is not set
AUTO_SLOTS_MAX = 4  # SLOTS_PER_GPU=auto never puts more runs than this on one GPU


def free_gpu_memory(gpus: Sequence[str], env: Optional[Dict[str, str]] = None) -> Dict[str, int]:
    """Free memory in MB of each of ``gpus`` (nvidia-smi's indices) as ``nvidia-smi`` (on the PATH of
    ``env``) reports it; {} when it is not installed or does not answer (no driver, a CPU machine)."""
    env = dict(os.environ if env is None else env)
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0:
        return {}
    free = {}
    for ln in out.stdout.splitlines():
        parts = [x.strip() for x in ln.split(",")]
        if len(parts) == 2 and parts[0] in gpus and parts[1].isdigit():
            free[parts[0]] = int(parts[1])
    return free


def unit_memory_mb(members: int, run_mb: int) -> int:
    """GPU memory of a process of ``members`` runs: the image encoder's pass is shared, each member
    adds its text pass and optimiser state; counted as a whole run each, which over-counts."""
    return run_mb * max(1, members)


def gpu_slots(gpus: Sequence[str], largest_unit: int = 1, env: Optional[Dict[str, str]] = None) -> Dict[str, int]:
    """How many of the plan's processes run at once on each GPU: ``SLOTS_PER_GPU=N`` (N >= 1) on every
    GPU; unset or ``auto``: each GPU's free memory (``nvidia-smi``) over the memory of the plan's
    largest process (``GPU_RUN_MB`` a run, default 6000) at most ``AUTO_SLOTS_MAX``, and 1 on a GPU
    nvidia-smi does not report. Small runs leave a GPU mostly idle (kernel launches, not arithmetic,
    bound a 47-class step), so several share it. Raises ValueError on a malformed setting."""
    env = os.environ if env is None else env
    raw = env.get("SLOTS_PER_GPU", "").strip()
    if raw and raw != "auto":
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError("SLOTS_PER_GPU={!r}: expected a whole number >= 1 (runs at once on each GPU) "
                             "or 'auto'".format(raw))
        return {g: int(raw) for g in gpus}
    run_mb = env.get("GPU_RUN_MB", "").strip() or str(GPU_RUN_MB)
    if not run_mb.isdigit() or int(run_mb) < 1:
        raise ValueError("GPU_RUN_MB={!r}: expected a whole number of MB >= 1 (one run's GPU memory)".format(run_mb))
    need = unit_memory_mb(largest_unit, int(run_mb))
    free = free_gpu_memory(gpus, env)
    return {g: max(1, min(AUTO_SLOTS_MAX, free[g] // need)) if g in free else 1 for g in gpus}


def run_gpus(plan: Dict, gpus: List[str], slots: Optional[Dict[str, int]] = None) -> int:
    """The plan's unfinished runs on ``gpus``, ``slots[gpu]`` processes at a time on each (None:
    ``gpu_slots``, from SLOTS_PER_GPU or the GPUs' free memory), each with its own
    ``CUDA_VISIBLE_DEVICES`` and its output in ``<OUT>/.sweep/logs/<plan>-<i>.out``; a failure is
    reported with its log's "Error:" line and the rest go on; exit 1 when any failed. Ctrl-C starts
    no new run and waits for the running ones to write their "Interrupted" line."""
    if not gpus:
        _say("ENGINE=gpus needs GPUS, the GPU indices to use (e.g. GPUS=\"0 1 2 3\")", err=True)
        return 2
    header(plan)
    rc = check_finished_runs(plan)
    if rc:
        return rc
    pending = units(plan, [i for i in range(len(plan["runs"])) if not finished(plan["runs"][i])])
    if slots is None:
        try:
            slots = gpu_slots(gpus, max((len(m) for m, _ in pending), default=1))
        except ValueError as e:
            _say(str(e), err=True)
            return 2
    tag = plan.get("tag") or "gpus"
    prog = Progress(plan, workers=sum(slots.get(g, 1) for g in gpus))
    prog.plan = dict(plan, tag=tag)
    if any(slots.get(g, 1) > 1 for g in gpus):
        _say("[{}] runs at once on each GPU: {}".format(tag, ", ".join(
            "GPU {} {}".format(g, slots.get(g, 1)) for g in gpus)))
    todo = queue.Queue()
    for unit in pending:
        todo.put(unit)
    logs = osp.join(sweep_dir(plan["out"]), "logs")
    os.makedirs(logs, exist_ok=True)
    lock, failed, stop, procs = threading.Lock(), [], threading.Event(), {}

    def worker(gpu, slot):
        while not stop.is_set():
            try:
                members, argv = todo.get_nowait()
            except queue.Empty:
                return
            starts = [start_line(plan["runs"][j]) for j in members]
            log = osp.join(logs, "{}-{}.out".format(plan["name"], members[0]))
            with lock:
                _say(*unit_lines(plan, prog, members, " on GPU {}".format(gpu)), *starts)
            t0 = time.time()
            with open(log, "w") as f:
                f.write("\n".join(starts) + "\n")
                f.flush()
                proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                        env=dict(os.environ, CUDA_VISIBLE_DEVICES=str(gpu)))
                procs[gpu, slot] = proc
                code = proc.wait()
            with lock:
                for i in members:
                    r = plan["runs"][i]
                    ok = finished(r) if len(members) > 1 else code == 0
                    prog.record(i, (time.time() - t0) / len(members), ok)
                    if not ok:
                        why = error_line(log) or "exit {}".format(code)
                        failed.append((i, r["dir"], why, log))
                        _say("[{}] run {}/{} failed on GPU {}: {}: {} (log {})".format(
                            tag, prog.number(i), prog.total, gpu, r["dir"], why, log), err=True)
                    else:
                        _say("[{}] run {}/{} done on GPU {} in {}: {}".format(
                            tag, prog.number(i), prog.total, gpu, hms(time.time() - t0), r["dir"]))

    threads = [threading.Thread(target=worker, args=(g, k), daemon=True)
               for k in range(max(slots.get(g, 1) for g in gpus)) for g in gpus if k < slots.get(g, 1)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:  # no new runs; the running ones end on the same Ctrl-C (or are stopped)
        stop.set()
        for p in list(procs.values()):
            stop_child(p)
        for t in threads:
            t.join(5)
        _say("[{}] interrupted: {}/{} runs done; the same command resumes the others".format(
            tag, prog.done, prog.total), err=True)
        raise
    _say("[{}] {}/{} runs done, {} failed, this session {}".format(
        tag, prog.done, prog.total, len(failed), hms(time.time() - prog.start)))
    rc = run_reports(plan)
    if failed:
        _say("[{}] failed (the same command runs them again):".format(tag), err=True)
        _say(*("  {}: {}".format(d, why) for _, d, why, _ in sorted(failed)), err=True)
        return 1
    return rc


def run_task(sub: Dict, k: int) -> int:
    """Task ``k`` of a submission (a SLURM array element): main.sh's start line of each of its runs,
    then train.py in this process (a signal reaches it directly): one run, or the runs that share a
    data stream as ``train.py --group`` (a member finished meanwhile leaves the group); runs all
    finished meanwhile are checked, not rerun. (A submission from before grouping: task k is run k.)"""
    task = sub["tasks"][k] if "tasks" in sub else {"runs": [k], "argv": sub["runs"][k]["argv"]}
    runs = [sub["runs"][j] for j in task["runs"]]
    os.chdir(sub["cwd"])
    if all(finished(r) for r in runs):
        return check_finished_runs({"runs": runs}) or 0
    _say(*(start_line(r) for r in runs if not finished(r)))
    os.execvp(task["argv"][0], task["argv"])


@register_executor("local")
def _execute_local(plan: Dict, plan_path: str) -> int:
    return run_local(plan)


@register_executor("gpus")
def _execute_gpus(plan: Dict, plan_path: str) -> int:
    return run_gpus(plan, os.environ.get("GPUS", "").split())
