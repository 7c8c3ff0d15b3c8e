"""Plans against what is on disk (issue 29, items 3, 4, 8, 10, 11, 15): a finished run whose stored
settings differ is "settings differ" (with the keys) in DRY_RUN plans, under ENGINE=slurm and in
``python -m ptnl.sweep status``, through train.py's own check; plans with other overrides get
their own file; trailing overrides of what the folder name encodes are refused by every script; a
command rejected before training leaves no plan; OUT a file and Ctrl-C give one line, no
traceback; an interrupted run is "interrupted, resumable"; dry runs print a few lines."""
import json
import os
import os.path as osp
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO, SMALL_OPTS, terminal_sigint, train_args
from test_identity import resolved_cfg, write_finished
from test_scripts_ux import fake  # noqa: F401  (the fake PYTHON fixture)
from ptnl.sweep.plan import make_plan

SETTING = "shots4_nctx16_cscFalse_ctpend"


def finished_runs(world, out, epochs, seeds=(1, 2)):
    """results.json of main.sh's runs (dtd rn50 0.5 gce, 4 shots) as train.py writes it, trained
    with ``epochs`` (nothing is trained: the record holds the resolved config)."""
    dirs = []
    for seed in seeds:
        d = osp.join(out, "dtd", "PTNL", "clip-vit", "sym-swap-0.5", "gce", SETTING, "seed{}".format(seed))
        args = train_args(world["data"], world["clip"], d, seed=seed, shots=4, rate=0.5, loss="gce", epochs=epochs)
        args += ["TRAINER.PTNL.N_CTX", "16", "TRAINER.PTNL.CSC", "False", "TRAINER.PTNL.CLASS_TOKEN_POSITION", "end"]
        write_finished(resolved_cfg(args))
        dirs.append(d)
    return dirs


def main_sh(world, out, epochs, tmp_path, **env):
    full = dict(os.environ, DATA=world["data"], CLIP_WEIGHTS=world["clip"], SEEDS="1 2", SHOTS="4", OUT=out,
                PYTHON=sys.executable, SUMMARY="0")
    full.update(env)
    cmd = ["bash", "scripts/ptnl/main.sh", "dtd", "rn50", "0.5", "gce", "OPTIM.MAX_EPOCH", str(epochs)] + SMALL_OPTS
    return subprocess.run(cmd, cwd=REPO, env=full, capture_output=True, text=True, timeout=600)


def fake_slurm(tmp_path):
    """sbatch (logs its arguments, answers job 4242) and squeue (holds nothing) on a PATH."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho \"$@\" >> {}\necho 4242\n".format(tmp_path / "sbatch.log"))
    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 0\n")
    for f in ("sbatch", "squeue"):
        (bin_dir / f).chmod(0o755)
    return "{}:{}".format(bin_dir, os.environ["PATH"])


def status(out):
    return subprocess.run([sys.executable, "-m", "ptnl.sweep", "status", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


# ----------------------------------------------------------------------------- item 3
def test_plans_and_status_name_runs_whose_settings_differ(world, tmp_path):
    out = str(tmp_path / "out")
    seed1, seed2 = finished_runs(world, out, epochs=3)
    same = main_sh(world, out, 3, tmp_path, DRY_RUN="1")
    assert same.returncode == 0, same.stderr
    assert "2 runs: 2 done, 0 queued or running, 0 to run" in same.stdout

    other = main_sh(world, out, 5, tmp_path, DRY_RUN="1")
    assert other.returncode == 3, other.stdout + other.stderr  # the real command stops there
    assert "2 runs: 0 done, 2 with other settings (train.py stops on them), 0 queued or running, 0 to run" \
        in other.stdout, other.stdout
    for d in (seed1, seed2):
        assert "settings differ: {}: OPTIM.MAX_EPOCH stored 3, requested 5".format(d) in other.stdout

    path = fake_slurm(tmp_path)
    slurm = main_sh(world, out, 5, tmp_path, DRY_RUN="1", ENGINE="slurm", PATH=path)
    assert slurm.returncode == 3 and "2 with other settings, 0 queued or running, 0 to submit" in slurm.stdout
    slurm = main_sh(world, out, 5, tmp_path, ENGINE="slurm", PATH=path)
    assert slurm.returncode == 3 and "nothing submitted" in slurm.stderr, slurm.stdout + slurm.stderr
    assert not (tmp_path / "sbatch.log").exists()

    local = main_sh(world, out, 5, tmp_path)  # stops, and its plan stays (its runs' folders exist)
    assert local.returncode == 3 and "OPTIM.MAX_EPOCH: stored 3, requested 5" in local.stderr
    st = status(out)
    assert st.returncode == 0, st.stderr
    assert "(2 runs): 0 done, 2 settings differ, 0 running, 0 queued, 0 failed, 0 missing" in st.stdout, st.stdout
    assert "  settings differ: {}: OPTIM.MAX_EPOCH stored 3, requested 5".format(seed1) in st.stdout
    assert main_sh(world, out, 3, tmp_path).returncode == 0  # the 3-epoch plan: done, a plan of its own
    plans = sorted(os.listdir(osp.join(out, ".sweep")))
    assert len([p for p in plans if p.endswith(".json")]) == 2, plans
    st = status(out).stdout
    assert "(2 runs): 2 done, 0 running" in st and "(2 runs): 0 done, 2 settings differ" in st, st


def test_other_overrides_make_another_plan(tmp_path):
    def build(epochs):
        path = tmp_path / "build{}".format(epochs)
        argv = ["python", "train.py", "--output-dir", "o/seed1", "OPTIM.MAX_EPOCH", str(epochs)]
        path.write_text(json.dumps({"run": {"dir": "o/seed1", "argv": argv, "opts": argv[-2:], "trainer": "PTNL",
                                            "loss": "ce", "rate": "0.5", "shots": "16", "seed": "1"}}) + "\n")
        return make_plan(str(path), out=str(tmp_path), name="main-PTNL-dtd-rn50")["name"]
    assert build(3) != build(5) and build(3) == build(3)


# ----------------------------------------------------------------------------- item 4
@pytest.mark.parametrize("script,args", [
    ("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "gce"]),
    ("scripts/ptnl/sweep.sh", ["dtd", "rn50"]),
    ("scripts/ptnl/ablation.sh", ["dtd", "rn50"]),
    ("scripts/ptnl/ctx_length.sh", ["dtd", "rn50"]),
    ("scripts/upl/main.sh", ["dtd", "rn50", "random", "gce"]),
    ("scripts/methods/compare.sh", ["dtd", "rn50"]),
])
def test_every_script_refuses_overrides_of_its_folder_name(fake, script, args):  # noqa: F811
    for key, value, instead in (("DATASET.NOISE.RATE", "0.25", "RATE"), ("DATASET.NUM_SHOTS", "4", "SHOTS="),
                                ("TRAINER.PTNL.LOSS", "ce", "LOSS")):
        proc, calls = fake(script, args + ["OPTIM.MAX_EPOCH", "3", key, value], DRY_RUN="1", RATES="0.5")
        assert proc.returncode == 2, (key, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(key + " " + value) and instead in lines[0], lines
        assert not any(c[0] == "train.py" for c in calls)  # refused before anything runs


def test_upl_refuses_a_selection_other_than_its_argument(fake):  # noqa: F811
    proc, _ = fake("scripts/upl/main.sh", ["dtd", "rn50", "random", "gce", "TRAINER.UPL.SELECTION", "topk"],
                   DRY_RUN="1")
    assert proc.returncode == 2 and "SELECTION argument" in proc.stderr and "Traceback" not in proc.stderr
    proc, _ = fake("scripts/upl/main.sh", ["dtd", "rn50", "random", "gce", "TRAINER.UPL.SELECTION", "random"],
                   DRY_RUN="1")
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- items 8, 10, 11
REJECTING = r'''#!{python}
"""Fake PYTHON: train.py rejects the run before writing anything (as a backbone typo does)."""
import sys
if sys.argv[1:2] == ["train.py"]:
    print("Error: Unknown backbone 'pockt'", file=sys.stderr); sys.exit(2)
'''

SLEEPING = r'''#!{python}
"""Fake PYTHON: train.py makes its folder, then trains (sleeps) until Ctrl-C, as train.py ends it."""
import os, sys, time
if sys.argv[1:2] == ["train.py"] and "--dry-run" not in sys.argv:
    out = sys.argv[sys.argv.index("--output-dir") + 1]
    os.makedirs(out, exist_ok=True)
    open(os.environ["STARTED"], "w").close()
    try:
        time.sleep(120)
    except KeyboardInterrupt:
        with open(os.path.join(out, "log.txt"), "a") as f:
            f.write("Interrupted at epoch 2/5: re-run the same command to resume.\n")
        print("Interrupted at epoch 2/5: re-run the same command to resume.", file=sys.stderr)
        sys.exit(130)
'''


def script_python(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_command_rejected_before_training_leaves_no_plan(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=script_python(tmp_path, "rejecting", REJECTING), OUT=str(out), DATA="/data",
               SEEDS="1", SUMMARY="0")
    proc = subprocess.run(["bash", "scripts/ptnl/main.sh", "dtd", "rn50", "0.5", "gce"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Unknown backbone" in proc.stderr
    assert not list(out.glob(".sweep/*.json")), list(out.rglob("*"))
    assert "No plans under" in status(out).stderr


def test_out_that_is_a_file_is_one_line(fake, tmp_path):  # noqa: F811
    out = tmp_path / "a-file"
    out.write_text("")
    for dry in ("0", "1"):
        proc, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "gce"], OUT=str(out), DRY_RUN=dry,
                           SUMMARY="0")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.strip().splitlines() == [
            "OUT={} cannot hold the runs: {} is a file, not a folder; set OUT to a folder".format(out, out)]
        assert not any(c[0] == "train.py" and "--dry-run" not in c for c in calls)


def test_ctrl_c_is_one_line_each_and_status_says_resumable(tmp_path):
    out, started = tmp_path / "out", tmp_path / "started"
    env = dict(os.environ, PYTHON=script_python(tmp_path, "sleeping", SLEEPING), OUT=str(out), DATA="/data",
               SEEDS="1", SUMMARY="0", STARTED=str(started))
    proc = subprocess.Popen(["bash", "scripts/ptnl/main.sh", "dtd", "rn50", "0.5", "gce"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=terminal_sigint)
    end = time.time() + 60
    while not started.exists():
        assert time.time() < end and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert len(stderr.strip().splitlines()) <= 2 and "Interrupted at epoch 2/5" in stderr, stderr
    (run,) = [p.parent for p in out.rglob("log.txt")]
    os.makedirs(run / "prompt_learner")
    open(run / "prompt_learner" / "model.pth.tar-1", "w").close()
    st = status(out).stdout
    assert "1 interrupted" in st and "0 failed" in st, st
    assert "interrupted: {}: interrupted at epoch 2; resumable: the same command resumes it from its epoch-1 " \
           "checkpoint".format(run) in st, st


# ----------------------------------------------------------------------------- item 15
def test_dry_run_of_a_big_grid_is_a_few_lines(fake, tmp_path):  # noqa: F811
    env = dict(RATES="0.0 0.125 0.25 0.375 0.5 0.625 0.75", SEEDS="1 2 3", DRY_RUN="1")
    proc, calls = fake("scripts/ptnl/sweep.sh", ["dtd", "rn50"], **env)  # 4 trainer-losses x 7 rates x 3 seeds
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "84 runs: 0 done, 0 queued or running, 84 to run" in proc.stdout
    assert len(lines) <= 12 and "VERBOSE=1 lists every run" in proc.stdout, proc.stdout
    assert sum(c[0] == "train.py" and "--dry-run" in c for c in calls) == 84  # every run checked
    verbose, _ = fake("scripts/ptnl/sweep.sh", ["dtd", "rn50"], VERBOSE="1", **env)
    assert verbose.stdout.count("  todo ") == 84 and verbose.stdout.count("Config of ") == 84


def test_grouped_runs_count_up_in_the_order_they_start(tmp_path):
    """Grouped runs start out of plan order (a group holds runs 1 and 3 of the plan): the progress
    lines count 1, 2, 3, 4 as they start, after the runs finished before."""
    from ptnl.sweep.engines import unit_lines
    from ptnl.sweep.plan import Progress
    runs = [{"dir": str(tmp_path / "r{}".format(i)), "argv": [], "trainer": "PTNL", "loss": "ce gce".split()[i % 2],
             "rate": "0.5", "shots": "16", "seed": str(i)} for i in range(5)]
    os.makedirs(runs[2]["dir"])
    open(osp.join(runs[2]["dir"], "results.json"), "w").close()  # finished before this session
    plan = {"runs": runs, "tag": "sweep", "name": "p", "title": "", "desc": ""}
    prog = Progress(plan)
    lines = unit_lines(plan, prog, [1, 3]) + unit_lines(plan, prog, [0, 4])
    assert [ln.split("[#")[0].split("[.")[0].strip() for ln in lines] == \
        ["[sweep] run {}/5".format(k) for k in (2, 3, 4, 5)], lines
