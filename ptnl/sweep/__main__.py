"""python -m ptnl.sweep plan|run BUILD_FILE ... | status OUT | task SUBMISSION K | summary PLAN

``run``: the plan built by a grid script (``scripts/ptnl/lib.sh``), executed by ``ENGINE`` (local,
the default; gpus with ``GPUS`` and ``SLOTS_PER_GPU``; slurm with ``SBATCH_ARGS`` and ``MAX_PARALLEL``); with
``DRY_RUN=1`` (or ``plan``) it only prints the plan in a few lines (``VERBOSE=1``: every run and,
for DRY_RUN, each run's resolved config), a GPU-hours estimate and what train.py's checks say.
``status``: done, settings differ, running, queued, interrupted, failed (and why) and missing runs of
every plan under OUT. ``task`` and ``summary`` are what the SLURM jobs run. The files named in
``PTNL_PLUGINS`` are loaded first (a sweep engine of one's own: ``register_executor``), without torch."""
import argparse
import json
import os
import os.path as osp
import sys

from ptnl.errors import PluginError
from ptnl.io.plugins import import_plugins
from ptnl.sweep import engines, slurm, status
from ptnl.sweep.plan import (PlanError, answer_text, check_plan, differences, discard_plan, finished, load_plan,
                             make_plan, out_problem, plan_path, run_reports, save_plan, settings_state)

SHORT_PLAN = 12  # a plan of at most this many runs is listed in full; a longer one in a few lines (VERBOSE=1: all)


def verbose() -> bool:
    return os.environ.get("VERBOSE", "0") not in ("0", "")


def print_plan(plan, engine, answers, held, *, full=False):
    """The plan in a few lines: the counts, the GPU-hours estimate, the finished runs whose settings
    differ (with the keys), and the runs (all of them for a short plan or with ``full``)."""
    tag = plan.get("tag") or "main"
    runs = plan["runs"]
    state = {}
    for i, r in enumerate(runs):
        if finished(r):
            state[i] = "done" if settings_state(answers.get(i, {"code": 0})) == "done" else "differ"
        else:
            state[i] = "held" if r["dir"] in held else "todo"
    count = {k: sum(v == k for v in state.values()) for k in ("done", "differ", "held", "todo")}
    differ = " {} with other settings (train.py stops on them),".format(count["differ"]) if count["differ"] else ""
    print("[{}] plan {}: {} runs: {} done,{} {} queued or running, {} to run with ENGINE={}".format(
        tag, plan["name"], len(runs), count["done"], differ, count["held"], count["todo"], engine))
    print("[{}] {}".format(tag, slurm.estimate_line(plan, [r for i, r in enumerate(runs) if state[i] == "todo"])))
    shown = list(range(len(runs))) if full or len(runs) <= SHORT_PLAN else \
        [i for i in range(len(runs)) if state[i] == "differ"][:10] + \
        [i for i in range(len(runs)) if state[i] == "todo"][:3]
    for i in sorted(shown):
        if state[i] == "differ":
            print("  settings differ: {}: {}".format(runs[i]["dir"], differences(answers[i])))
        else:
            print("  {:4s} {}".format(state[i], runs[i]["dir"]))
    if len(shown) < len(runs):
        print("  ... {} more of the {} runs (VERBOSE=1 lists every run)".format(len(runs) - len(shown), len(runs)))
    sys.stdout.flush()
    return state


def dry_run(plan, engine, only_plan):
    """DRY_RUN=1 (or ``plan``): the plan, train.py's settings check of every finished run and, for
    ``DRY_RUN``, train.py's checks of every run to run (one process; VERBOSE=1 prints each run's
    resolved config). Nothing is written. Exit 3 when a finished run holds other settings (the real
    command stops there), a failing check's code, else 0."""
    tag = plan.get("tag") or "main"
    why = out_problem(plan["out"])
    if why:
        print(why, file=sys.stderr)
        return 2
    queued = engines.EXECUTORS.meta(engine)["queued"]
    try:
        held = queued(plan["out"]) if queued else {}
    except RuntimeError:
        held = {}
    answers = check_plan(plan, dry_todo=not only_plan)
    if plan.get("tag"):
        engines.header(plan)
    state = print_plan(plan, engine, answers, held, full=verbose())
    rc = 3 if "differ" in state.values() else 0
    extra = engines.EXECUTORS.meta(engine)["dry_run"]
    if extra:
        rc = extra(plan, answers) or rc
    todo = [i for i in sorted(answers) if state[i] == "todo"]
    for i in todo:
        a = answers[i]
        if verbose():
            print("Config of {}:".format(plan["runs"][i]["dir"]))
            print(a.get("stdout", "").rstrip())
        if a["code"]:
            print("[{}] train.py --dry-run stops on {} (exit {}):".format(tag, plan["runs"][i]["dir"], a["code"]),
                  file=sys.stderr)
            print(a.get("stderr", "").rstrip() or answer_text(a), file=sys.stderr)
            return a["code"]
    if todo and not verbose():
        print("[{}] train.py --dry-run: checks passed for the {} run(s) to run (VERBOSE=1 prints each resolved "
              "config)".format(tag, len(todo)))
    sys.stdout.flush()
    return rc


def cmd_run(a, only_plan=False):
    engine = os.environ.get("ENGINE", "local") or "local"
    if engine not in engines.EXECUTORS:
        print(engines.EXECUTORS.unknown(engine), file=sys.stderr)
        return 2
    unavailable = engines.EXECUTORS.meta(engine)["unavailable"]
    why = unavailable() if unavailable else None
    if why:
        print(why, file=sys.stderr)
        return 2
    plan = make_plan(a.build_file, out=a.out, name=a.name, tag=a.tag, title=a.title, desc=a.desc,
                     nctx_label=a.nctx_label)
    if only_plan or os.environ.get("DRY_RUN", "0") == "1":
        return dry_run(plan, engine, only_plan)  # a dry run writes nothing
    existed = osp.isfile(plan_path(plan))
    path = save_plan(plan)
    rc = None
    try:
        rc = engines.EXECUTORS.lookup(engine)(plan, path)
    finally:
        if rc != 0 and not existed:  # rejected before any run started: no plan left behind
            discard_plan(plan)
    return rc


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
    try:
        import_plugins()  # PTNL_PLUGINS: an engine of one's own (ptnl.sweep.engines.register_executor)
        return dispatch(a)
    except (PlanError, PluginError) as e:
        print(e, file=sys.stderr)
        return 2
    except OSError as e:  # a folder that cannot be written, a file that cannot be read: one line
        if os.environ.get("PTNL_DEBUG"):
            raise
        print("Error: {} (set PTNL_DEBUG=1 for the full traceback)".format(e), file=sys.stderr)
        return 2
    except slurm.SlurmError as e:  # squeue or sbatch refused (e.g. no SLURM configuration on this machine)
        print(e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted: the same command resumes the runs (python -m ptnl.sweep status OUT shows them)",
              file=sys.stderr)
        return 130


def dispatch(a):
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
