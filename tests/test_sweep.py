"""Sweeps (issue 17): the grid scripts' one plan through ENGINE=gpus (fake devices, a fake PYTHON),
DRY_RUN's plan and GPU-hours estimate, and on a real single-node SLURM (the ``slurm`` fixture):
local and SLURM give the same table digit for digit, a run failing on purpose is reported and
resubmitted alone, a task killed mid-run resumes from its checkpoint."""
import glob
import json
import os
import os.path as osp
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO, SMALL_OPTS

FAKE = r'''#!{python}
"""Fake PYTHON for train.py: records CUDA_VISIBLE_DEVICES and when it ran; fails on a marked run."""
import json, os, sys, time
args = sys.argv[1:]
if args and args[0] == "train.py":
    out = args[args.index("--output-dir") + 1]
    if os.path.isfile(os.path.join(out, "results.json")):
        print("Done already: " + out); sys.exit(0)
    if "--dry-run" in args:
        sys.exit(0)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpu is not None:  # ENGINE=gpus: wait (up to 10 s) until a run has started on another GPU
        open(os.path.join(os.environ["STARTS"], gpu + "-" + str(os.getpid())), "w").close()
        end = t0 + 10
        while time.time() < end and not any(not n.startswith(gpu + "-") for n in os.listdir(os.environ["STARTS"])):
            time.sleep(0.05)
    time.sleep(0.6)
    with open(os.environ["FAKELOG"], "a") as f:
        f.write(json.dumps([out, os.environ.get("CUDA_VISIBLE_DEVICES"), t0, time.time()]) + "\n")
    if os.environ.get("FAIL_RUN") and out.endswith(os.environ["FAIL_RUN"]):
        print("Error: failing on purpose"); sys.exit(1)
    json.dump({{"accuracy": 50.0, "wall_time_s": 1800.0}}, open(os.path.join(out, "results.json"), "w"))
'''


@pytest.fixture
def fake_env(tmp_path):
    path = tmp_path / "fakepython"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "starts").mkdir()
    return dict(os.environ, PYTHON=str(path), FAKELOG=str(tmp_path / "fake.log"), OUT=str(tmp_path / "out"),
                STARTS=str(tmp_path / "starts"),
                DATA="/data", SEEDS="1 2", SHOTS="16", CONFIGS="ClassifierR", RATES="0.0 0.5", LOSSES="ce",
                GROUP="0")  # the fake train.py runs one run a call (no --group)


def ablation(env, **extra):
    return subprocess.run(["bash", "scripts/ptnl/ablation.sh", "dtd", "rn50"], cwd=REPO, env=dict(env, **extra),
                          capture_output=True, text=True, timeout=300)


def test_gpus_engine_one_run_per_gpu_failures_reported_rest_continue(fake_env, tmp_path):
    proc = ablation(fake_env, ENGINE="gpus", GPUS="3 7", FAIL_RUN="sym-swap-0.5/ce/shots16/seed2")
    assert proc.returncode == 1, proc.stderr
    runs = [json.loads(ln) for ln in open(fake_env["FAKELOG"])]
    assert len(runs) == 4 and {r[1] for r in runs} == {"3", "7"}
    for gpu in ("3", "7"):  # at most one run per GPU at a time
        spans = sorted((r[2], r[3]) for r in runs if r[1] == gpu)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    # runs on different GPUs overlap in time (a fake run waits up to 10 s for a run on another GPU to
    # start, so a serial engine leaves every pair apart and fails here)
    assert any(a[2] < b[3] and b[2] < a[3] for a in runs for b in runs if a[1] != b[1]), runs
    assert "failed on GPU" in proc.stderr and "Error: failing on purpose" in proc.stderr
    assert "[ablation] 3/4 runs done, 1 failed" in proc.stdout
    os.remove(fake_env["FAKELOG"])
    again = ablation(fake_env, ENGINE="gpus", GPUS="3 7")
    assert again.returncode == 0, again.stderr
    (rerun,) = [json.loads(ln) for ln in open(fake_env["FAKELOG"])]
    assert rerun[0].endswith("sym-swap-0.5/ce/shots16/seed2")
    assert again.stdout.count("Done already, skipping") == 3


def test_dry_run_prints_the_plan_and_a_gpu_hours_estimate(fake_env):
    proc = ablation(fake_env, DRY_RUN="1")
    assert proc.returncode == 0, proc.stderr
    assert "4 runs: 0 done, 0 queued or running, 4 to run with ENGINE=local" in proc.stdout
    assert "no finished run of this plan to estimate from yet" in proc.stdout
    assert not osp.exists(fake_env["FAKELOG"])
    assert ablation(fake_env, RATES="0.0").returncode == 0  # two runs of 1800 s each
    proc = ablation(fake_env, DRY_RUN="1")
    assert "4 runs: 2 done, 0 queued or running, 2 to run" in proc.stdout
    assert "GPU-hours for the 2 runs to run: about 1.00 (mean wall_time_s of 2 finished runs" in proc.stdout
    assert proc.stdout.count("  todo ") == 2 and proc.stdout.count("  done ") == 2


def test_status_without_slurm_lists_done_failed_and_missing(fake_env):
    ablation(fake_env, FAIL_RUN="sym-swap-0.0/ce/shots16/seed2")  # local: stops at the failure
    out = subprocess.run([sys.executable, "-m", "ptnl.sweep", "status", fake_env["OUT"]], cwd=REPO,
                         capture_output=True, text=True, env=dict(fake_env, PATH="/usr/bin:/bin")).stdout
    assert "(4 runs): 1 done, 0 running, 0 queued, 1 failed, 2 missing" in out, out


# ----------------------------------------------------------------------------- a real SLURM
WRAPPER = """#!/bin/bash
# PYTHON for the tests: fails the run named in FAIL_RUN while the file FAIL_MARK exists
if [ -n "${{FAIL_MARK:-}}" ] && [ -e "$FAIL_MARK" ] && [[ " $* " == *"$FAIL_RUN "* ]]; then
  echo "Error: failing on purpose (FAIL_MARK)" >&2; exit 1
fi
exec {python} "$@"
"""

SLOW = '''"""PTNL_PLUGINS file for the tests: after each checkpoint, wait while the file SLOW_MARK exists."""
import os, time
from ptnl.trainers.base import PTNLTrainerBase
_save = PTNLTrainerBase.save_model


def save_model(self, *a, **k):
    _save(self, *a, **k)
    while os.path.exists(os.environ.get("SLOW_MARK", "")):
        time.sleep(0.5)


PTNLTrainerBase.save_model = save_model
'''


def _slurm_env(world, tmp_path, out, **extra):
    wrapper = tmp_path / "python-wrapper"
    if not wrapper.exists():
        wrapper.write_text(WRAPPER.format(python=sys.executable))
        wrapper.chmod(0o755)
    env = dict(os.environ, PYTHON=str(wrapper), PTNL_SWEEP_PYTHON=sys.executable, DATA=world["data"],
               CLIP_WEIGHTS=world["clip"], OUT=str(out), SEEDS="1 2", SHOTS="4", CONFIGS="PTNL", LOSSES="ce",
               RATES="0.0 0.5", MAX_PARALLEL="2", SBATCH_ARGS="--time=30", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def _grid(env):
    cmd = ["bash", "scripts/ptnl/ablation.sh", "dtd", "rn50", "OPTIM.MAX_EPOCH", "1"] + SMALL_OPTS
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    print(proc.stdout[-6000:])
    return proc


def _status(out):
    return subprocess.run([sys.executable, "-m", "ptnl.sweep", "status", str(out)], cwd=REPO, capture_output=True,
                          text=True).stdout


def test_slurm_same_table_as_local_failure_resubmitted_alone(slurm, world, tmp_path):
    local = _grid(_slurm_env(world, tmp_path, tmp_path / "local", ENGINE="local"))
    assert local.returncode == 0, local.stderr[-3000:]
    table_local = local.stdout[local.stdout.index("[ablation] 4/4 runs done"):].split("\n", 1)[1].strip()

    out = tmp_path / "slurm"
    mark = tmp_path / "fail-now"
    mark.write_text("")
    env = _slurm_env(world, tmp_path, out, ENGINE="slurm", FAIL_MARK=str(mark),
                     FAIL_RUN="/sym-swap-0.5/ce/shots4_nctx16_cscFalse_ctpend/seed2")
    first = _grid(env)
    assert first.returncode == 0, first.stderr
    assert "4 runs: 0 done, 0 queued or running, 4 to submit" in first.stdout
    # MaxArraySize 3: two chunks, each numbered from 0 with its offset into the submission file
    assert "(--array=0-2%2): runs 1-3 of the 4" in first.stdout and "(--array=0-0%2): runs 4-4" in first.stdout
    assert "summary job" in first.stdout
    print("squeue -r:\n" + slurm.run("squeue", "-r", "-o", "%i %j %T %b").stdout)
    assert slurm.wait_idle(900), slurm.run("squeue").stdout
    st = _status(out)
    print(st)
    assert "4 runs): 3 done, 0 running, 0 queued, 1 failed, 0 missing" in st
    assert "Error: failing on purpose (FAIL_MARK)" in st and "seed2" in st

    mark.unlink()
    second = _grid(env)
    assert "4 runs: 3 done, 0 queued or running, 1 to submit" in second.stdout
    assert "(--array=0-0%2): runs 1-1 of the 1 to submit" in second.stdout
    third = _grid(env)  # while it is queued or running: nothing more to submit
    assert "1 queued or running, 0 to submit" in third.stdout and "nothing to submit" in third.stdout
    assert slurm.wait_idle(900)
    print("job completions:\n" + open(slurm.jobcomp).read())
    summaries = glob.glob(str(out / ".sweep" / "*.summary.out"))
    assert len(summaries) == 1
    table_slurm = open(summaries[0]).read().strip()
    print("local table:\n" + table_local + "\nslurm table:\n" + table_slurm)
    # the same table; the report folder each grid names is under its own OUT
    assert table_slurm.replace(str(out), "OUT") == table_local.replace(str(tmp_path / "local"), "OUT")
    assert "4 runs): 4 done, 0 running, 0 queued, 0 failed, 0 missing" in _status(out)


def test_slurm_task_killed_mid_run_resumes_from_its_checkpoint(slurm, world, tmp_path):
    out, mark = tmp_path / "out", tmp_path / "slow"
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW)
    mark.write_text("")
    env = _slurm_env(world, tmp_path, out, ENGINE="slurm", SEEDS="1", PTNL_PLUGINS=str(plugin), SLOW_MARK=str(mark),
                     SUMMARY="0")
    cmd = ["bash", "scripts/ptnl/main.sh", "dtd", "rn50", "0.5", "ce", "OPTIM.MAX_EPOCH", "2"] + SMALL_OPTS
    sub = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert sub.returncode == 0 and "submitted array job" in sub.stdout, sub.stdout + sub.stderr
    end = time.time() + 600
    while not glob.glob(str(out / "dtd/PTNL/*/sym-swap-0.5/ce/*/seed1/*/model.pth.tar-1")):
        assert time.time() < end, slurm.run("squeue").stdout
        time.sleep(1)
    jobs = slurm.run("squeue", "-h", "-r", "-o", "%i").stdout.split()
    assert slurm.run("scancel", *jobs).returncode == 0  # killed while it waits after epoch 1
    assert slurm.wait_idle(120)
    mark.unlink()
    assert "failed" in _status(out)
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert "1 to submit" in again.stdout, again.stdout + again.stderr
    assert slurm.wait_idle(600)
    (run,) = glob.glob(str(out / "dtd/PTNL/*/sym-swap-0.5/ce/*/seed1"))
    assert osp.isfile(osp.join(run, "results.json"))
    logs = sorted(glob.glob(str(out / ".sweep/logs/*.out")), key=osp.getmtime)
    first, last = open(logs[0]).read(), open(logs[-1]).read()
    print(first[:300], last[:300])
    assert first.startswith("Running: " + run) and last.startswith("Resuming: {} (from epoch 1)".format(run))


def test_unknown_engine_lists_the_registered_executors(fake_env, tmp_path):
    """ENGINE names an executor of ptnl.sweep.engines.EXECUTORS (one signature, registered where it
    is defined); another name stops before any run, naming the known ones."""
    from ptnl.sweep import engines, slurm  # noqa: F401  (slurm registers itself)
    assert list(engines.EXECUTORS.names()) == ["local", "gpus", "slurm"]
    proc = ablation(fake_env, ENGINE="bogus")
    assert proc.returncode == 2 and not (tmp_path / "fake.log").exists()
    assert "Unknown sweep engine 'bogus' (ENGINE): expected one of local, gpus, slurm" in proc.stderr
