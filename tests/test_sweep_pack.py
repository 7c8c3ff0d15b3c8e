"""One process for a grid (ENGINE=local, ``ptnl.sweep.group.pack``): the grid scripts train a plan's
groups and lone runs one after another in one ``train.py --group`` process (one start-up), each run
ending as it would alone; the progress lines still come run by run, a failure names the run and how
many of the process did not start, and the same command resumes. PACK=0: a process a group; GROUP=0:
a process a run."""
import json
import os
import os.path as osp
import stat
import subprocess
import sys

from conftest import REPO, SMALL_OPTS, train_args
from ptnl.sweep import engines
from ptnl.sweep import group as sweep_group

FAKE = r'''#!{python}
"""Fake PYTHON: train.py and train.py --group FILE write each run's results.json in order (0.3 s a
run) and log each process; the run whose folder ends with FAIL_RUN fails (exit 1)."""
import json, os, sys, time
args = sys.argv[1:]
if not args or args[0] != "train.py":
    sys.exit(0)
members = json.load(open(args[2])) if args[1:2] == ["--group"] else [args[1:]]
outs = [m[m.index("--output-dir") + 1] for m in members]
if len(outs) == 1 and os.path.isfile(os.path.join(outs[0], "results.json")):  # the settings check of a finished run
    print("Done already: " + outs[0]); sys.exit(0)
with open(os.environ["FAKELOG"], "a") as f:
    f.write(json.dumps(outs) + "\n")
for out in outs:
    os.makedirs(out, exist_ok=True)
    time.sleep(0.3)
    if os.environ.get("FAIL_RUN") and out.endswith(os.environ["FAIL_RUN"]):
        print("Error: failing on purpose", file=sys.stderr); sys.exit(1)
    json.dump({{"accuracy": 50.0, "wall_time_s": 60.0}}, open(os.path.join(out, "results.json"), "w"))
'''


def _runs(*specs):
    """Plan runs from (trainer, loss, rate[, extra flags]) tuples (seed 1)."""
    out = []
    for spec in specs:
        trainer, loss, rate = spec[:3]
        flags = list(spec[3]) if len(spec) > 3 else []
        out.append({"argv": ["python", "train.py", "--root", "D", "--seed", "1", "--trainer", trainer] + flags +
                    ["--output-dir", "o/{}/{}/{}".format(trainer, loss, rate), "DATASET.NOISE.RATE", rate,
                     "TRAINER.PTNL.LOSS", loss], "trainer": trainer, "dir": "o/{}/{}/{}".format(trainer, loss, rate)})
    return out


def test_pack_puts_consecutive_plain_training_units_in_one_process(monkeypatch):
    runs = _runs(("PTNL", "ce", "0.0"), ("PTNL", "gce", "0.0"), ("ClassifierR", "ce", "0.0"), ("PTNL", "ce", "0.5"),
                 ("LinearProbe", "ce", "0.0"), ("PTNL", "ce", "0.25", ["--eval-only"]), ("LinearProbe", "ce", "0.5"))
    units = sweep_group.propose(runs, list(range(len(runs))))
    assert units == [[0, 1, 2], [3], [4], [5], [6]]  # ClassifierR shares PTNL's stream (GROUPABLE)
    # an evaluation is not a training run: it keeps its own process and ends the pack before it
    assert sweep_group.pack(runs, units) == [[[0, 1, 2], [3], [4]], [[5]], [[6]]]
    other = _runs(("PTNL", "ce", "0.75"))
    other[0]["argv"][0] = "/other/env/python"  # another interpreter: its own process
    assert sweep_group.pack(runs[:2] + other, [[0, 1], [2]]) == [[[0, 1]], [[2]]]
    plan = {"runs": runs, "out": "/nowhere", "name": "p"}
    todo = [0, 1, 2, 3, 4, 6]
    monkeypatch.delenv("PACK", raising=False)
    monkeypatch.delenv("GROUP", raising=False)
    assert [c for c, _ in engines.local_processes(plan, todo, write=False)] == [[[0, 1, 2], [3], [4], [6]]]
    monkeypatch.setenv("PACK", "0")
    assert [c for c, _ in engines.local_processes(plan, todo, write=False)] == [[[0, 1, 2]], [[3]], [[4]], [[6]]]
    monkeypatch.setenv("GROUP", "0")
    assert [c for c, _ in engines.local_processes(plan, todo, write=False)] == [[[i]] for i in todo]


def _fake_env(tmp_path, **extra):
    path = tmp_path / "fakepython"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return dict(os.environ, PYTHON=str(path), FAKELOG=str(tmp_path / "fake.log"), OUT=str(tmp_path / "out"),
                DATA="/data", SEEDS="1", SHOTS="16", TRAINERS="PTNL LinearProbe", LOSSES="ce gce",
                RATES="0.0 0.5", **extra)


def _sweep(env):
    return subprocess.run(["bash", "scripts/ptnl/sweep.sh", "dtd", "rn50"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_one_process_reports_run_by_run_stops_at_a_failure_and_resumes(tmp_path):
    env = _fake_env(tmp_path, FAIL_RUN="LinearProbe/rn50/sym-swap-0.0/ce/shots16/seed1")
    proc = _sweep(env)
    assert proc.returncode == 1, proc.stderr
    with open(env["FAKELOG"]) as f:
        (process,) = [json.loads(ln) for ln in f]  # one train.py for the six runs
    assert len(process) == 6
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[sweep] run ")]
    # each run's line once, in the order the process trains them: the two groups, then the probes
    assert [ln.split(": ", 1)[1].split(" (")[0] for ln in lines] == [
        "PTNL ce rate 0.0 shots 16 seed 1", "PTNL gce rate 0.0 shots 16 seed 1", "PTNL ce rate 0.5 shots 16 seed 1",
        "PTNL gce rate 0.5 shots 16 seed 1", "LinearProbe ce rate 0.0 shots 16 seed 1"]
    assert "(1 of 2 runs on one data stream, in one process with 4 other runs)" in lines[0]
    assert "4/6 done" in lines[-1] and proc.stdout.count("Running: ") == 5
    assert ("[sweep] run 5/6 failed: {}/dtd/LinearProbe/rn50/sym-swap-0.0/ce/shots16/seed1 (4/6 done, 1 more of its "
            "process not started; the same command resumes)".format(env["OUT"])) in proc.stderr
    os.remove(env["FAKELOG"])
    again = _sweep(dict(env, FAIL_RUN=""))
    assert again.returncode == 0, again.stderr
    with open(env["FAKELOG"]) as f:
        (process,) = [json.loads(ln) for ln in f]
    assert [p.split("/dtd/")[1] for p in process] == ["LinearProbe/rn50/sym-swap-0.0/ce/shots16/seed1",
                                                      "LinearProbe/rn50/sym-swap-0.5/ce/shots16/seed1"]
    assert "Retrying: " in again.stdout and "[sweep] 6/6 runs done" in again.stdout


def test_one_process_grid_equals_lone_runs(world, tmp_path):
    """sweep.sh's PTNL (CE, GCE), Classifier-R and linear-probe runs of two noise rates: one train.py
    process (PYTHON counts them) whose every result, epoch loss and context equals a lone run's."""
    import torch
    from ptnl.engine.utils import load_checkpoint
    from test_group import run
    log = tmp_path / "pythons.log"
    wrapper = tmp_path / "python"
    wrapper.write_text("#!/bin/bash\necho \"$*\" >> {}\nexec {} \"$@\"\n".format(log, sys.executable))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=str(wrapper), OUT=str(out), DATA=world["data"], CLIP_WEIGHTS=world["clip"],
               TRAINERS="PTNL ClassifierR LinearProbe", LOSSES="ce gce", RATES="0.0 0.5", SEEDS="1", SHOTS="4")
    cmd = ["bash", "scripts/ptnl/sweep.sh", "dtd", "rn50", "OPTIM.MAX_EPOCH", "2",
           "TRAINER.LINEAR_PROBE.PROTOCOL", "fixed"] + SMALL_OPTS
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trainings = [ln for ln in log.read_text().splitlines() if ln.startswith("train.py")]
    assert len(trainings) == 1 and "--group" in trainings[0]
    assert proc.stdout.count("Grouped with 2 other run(s)") == 6  # PTNL ce, gce and Classifier-R, each rate
    results = sorted(out.rglob("results.json"))
    assert len(results) == 8
    for path in results:
        got = json.loads(path.read_text())
        trainer, loss, rate = got["trainer"], got["loss"], got["noise"]["rate"]
        lone = tmp_path / "lone" / trainer / loss / str(rate)
        args = train_args(world["data"], world["clip"], str(lone), rate=rate, loss=loss, epochs=2,
                          extra=["TRAINER.LINEAR_PROBE.PROTOCOL", "fixed"])[1:]
        args[args.index("--trainer") + 1] = trainer
        args[args.index("--config-file") + 1] = "configs/trainers/{}/rn50.yaml".format(trainer)
        run(args)
        alone = json.loads((lone / "results.json").read_text())
        assert got["accuracy"] == alone["accuracy"], (trainer, loss, rate)
        # bit for bit with one thread (CI's workers); a stack's summed text pass rounds differently with
        # two (measured: epoch losses within 1e-7 relative, contexts within 6e-7; tests/test_stacked.py)
        losses = [(e["loss"], f["loss"]) for e, f in zip(got.get("epochs", []), alone.get("epochs", []))]
        assert len(losses) == len(alone.get("epochs", [])) and all(abs(x - y) <= 1e-5 * abs(y) for x, y in losses)
        if trainer == "PTNL":
            a, b = (load_checkpoint(osp.join(d, "prompt_learner", "model.pth.tar-2"))["state_dict"]["ctx"]
                    for d in (path.parent, lone))
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_process_frees_each_run_folder_and_loader_worker_when_its_run_ends(world, tmp_path):
    """A run folder's lock (``ptnl.runs.files.lock_run_dir``) is held while its run trains and given
    up when it ends, so that a finished run of a long process is not shown as in use by it; and the
    loader workers a per-sample stream keeps across epochs end with their run (without the
    collection after each group they stayed, idle, until some later garbage collection: 8 at once
    in a 16-run pack with 2 workers)."""
    import gc
    import multiprocessing
    from ptnl.runs import files
    from test_group import argv, run
    plan = tmp_path / "group.json"
    outs = [tmp_path / "g" / loss for loss in ("ce", "gce")] + [tmp_path / "probe"]
    workers = ["DATALOADER.NUM_WORKERS", "1"]
    members = [argv(world, outs[0], "ce", workers), argv(world, outs[1], "gce", workers),
               argv(world, outs[2], "ce")]
    probe = members[2]
    probe[probe.index("--trainer") + 1] = "LinearProbe"
    probe[probe.index("--config-file") + 1] = "configs/trainers/LinearProbe/rn50.yaml"
    probe += ["TRAINER.LINEAR_PROBE.PROTOCOL", "fixed"]
    plan.write_text(json.dumps(members))
    gc.disable()  # what the process lets go must not depend on when a collection happens to run
    try:
        run(["--group", str(plan)])
    finally:
        gc.enable()
    assert all((out / "results.json").is_file() for out in outs)
    assert not set(files._HELD) & {osp.abspath(str(out)) for out in outs}
    assert multiprocessing.active_children() == []
    # and another process may take a freed folder at once
    code = "from ptnl.runs.files import lock_run_dir; lock_run_dir({!r}); print('locked')".format(str(outs[2]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.strip() == "locked", proc.stderr
