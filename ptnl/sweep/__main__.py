"""python -m ptnl.sweep plan|run BUILD_FILE ... | status OUT | task SUBMISSION K | summary PLAN

``run``: the plan built by a grid script (``scripts/ptnl/lib.sh``), executed by ``ENGINE`` (local,
the default; gpus with ``GPUS``; slurm with ``SBATCH_ARGS`` and ``MAX_PARALLEL``); with
``DRY_RUN=1`` (or ``plan``) it only prints the plan and a GPU-hours estimate. ``status``: done,
running, queued, failed (and why) and missing runs of every plan under OUT. ``task`` and
``summary`` are what the SLURM jobs run."""
import argparse
import json
import os
import subprocess
import sys

from ptnl.sweep import engines, slurm, status
from ptnl.sweep.plan import finished, load_plan, make_plan, run_reports, save_plan

ENGINES = ("local", "gpus", "slurm")


def print_plan(plan, path, engine):
    tag = plan.get("tag") or "main"
    try:
        held = slurm.queued_runs(plan["out"]) if engine == "slurm" else {}
    except RuntimeError:
        held = {}
    todo = [r for r in plan["runs"] if not finished(r) and r["dir"] not in held]
    print("[{}] plan {}{}: {} runs: {} done, {} queued or running, {} to run with ENGINE={}".format(
        tag, plan["name"], " ({})".format(path) if path else "", len(plan["runs"]), sum(finished(r) for r in plan["runs"]),
        len(held.keys() & {r["dir"] for r in plan["runs"]}), len(todo), engine))
    print("[{}] {}".format(tag, slurm.estimate_line(plan, todo)))
    for r in plan["runs"]:
        state = "done" if finished(r) else "held" if r["dir"] in held else "todo"
        print("  {:4s} {}".format(state, r["dir"]))
    sys.stdout.flush()


def cmd_run(a, only_plan=False):
    engine = os.environ.get("ENGINE", "local") or "local"
    if engine not in ENGINES:
        print("ENGINE must be one of {}, got '{}'".format(" ".join(ENGINES), engine), file=sys.stderr)
        return 2
    if engine == "slurm" and not slurm.available():
        print("ENGINE=slurm needs sbatch and squeue on PATH (run it on the cluster's login node)", file=sys.stderr)
        return 2
    plan = make_plan(a.build_file, out=a.out, name=a.name, tag=a.tag, title=a.title, desc=a.desc,
                     nctx_label=a.nctx_label)
    dry = only_plan or os.environ.get("DRY_RUN", "0") == "1"
    path = None if dry else save_plan(plan)  # a dry run writes nothing
    if dry:
        if plan.get("tag"):
            engines.header(plan)
        print_plan(plan, path, engine)
        if engine == "slurm":
            return slurm.submit(plan, path, dry=True)
        if engine == "local" and not only_plan:  # main.sh's DRY_RUN: each run's resolved config
            for r in plan["runs"]:
                print("Config of {}:".format(r["dir"]), flush=True)
                argv = r["argv"][:2] + ["--dry-run"] + r["argv"][2:]
                rc = subprocess.call(argv)
                if rc:
                    return rc
        return 0
    if engine == "local":
        return engines.run_local(plan)
    if engine == "gpus":
        return engines.run_gpus(plan, os.environ.get("GPUS", "").split())
    engines.header(plan)
    return slurm.submit(plan, path)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m ptnl.sweep", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("plan", "run"):
        s = sub.add_parser(name, help="print the plan" if name == "plan" else "execute the plan with ENGINE")
        s.add_argument("build_file", help="the records a grid script wrote (lib.sh's ptnl_plan_run)")
        s.add_argument("--out", required=True, help="the scripts' OUT (the plan goes to OUT/.sweep)")
        s.add_argument("--name", required=True, help="the plan's name (a digest of its runs is added)")
        s.add_argument("--tag", default="", help="the grid's tag in progress lines (none: main.sh's output)")
        s.add_argument("--title", default="")
        s.add_argument("--desc", default="")
        s.add_argument("--nctx-label", action="store_true", help="progress labels name n_ctx")
    s = sub.add_parser("status", help="done, running, queued, failed and missing runs of the plans under OUT")
    s.add_argument("out")
    s = sub.add_parser("task", help="one run of a submission file (a SLURM array task)")
    s.add_argument("submission")
    s.add_argument("index", type=int)
    s = sub.add_parser("summary", help="the closing table of a plan (the SLURM summary job)")
    s.add_argument("plan")
    a = p.parse_args(argv)
    if a.cmd in ("plan", "run"):
        return cmd_run(a, only_plan=a.cmd == "plan")
    if a.cmd == "status":
        return status.main(a.out)
    if a.cmd == "task":
        with open(a.submission) as f:
            return engines.run_task(json.load(f), a.index)
    plan = load_plan(a.plan)
    os.chdir(plan["cwd"])
    return run_reports(plan)


if __name__ == "__main__":
    sys.exit(main())
