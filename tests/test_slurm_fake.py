"""ENGINE=slurm everywhere (issue 27, item 8): fake ``sbatch``, ``squeue`` and ``scontrol`` on PATH
stand in for a cluster, so the submission (array chunks of MaxArraySize with their offsets,
MAX_PARALLEL, SBATCH_ARGS, the summary job's dependency, jobs.jsonl), the array tasks themselves
(``python -m ptnl.sweep task`` through the written .sbatch script), ``status`` (queued, running,
failed with the task log's Error line) and the resubmission of what failed run without SLURM or
root. The real single-node cluster tests stay in tests/test_sweep.py. A fake PYTHON replaces
training (it writes results.json), so these take seconds."""
import json
import os
import os.path as osp
import stat
import subprocess
import sys

import pytest

from conftest import REPO

# The fake cluster keeps its state in FAKE_SLURM (a folder): "next" (the next job id), "queue.jsonl"
# (one line per task SLURM holds: job, task, state, the command, its output file and the submitting
# environment, which SLURM passes on by default) and
# "calls.jsonl" (every sbatch and squeue call's arguments). "fake-slurmd" runs every queued task in
# submission order, as SLURM would, and empties the queue; FAKE_SLURM_RUN=1 makes sbatch do that at
# once (a cluster that runs everything immediately).
COMMON = r'''#!{python}
import json, os, subprocess, sys
STATE = os.environ["FAKE_SLURM"]
QUEUE = os.path.join(STATE, "queue.jsonl")


def log_call(name):
    with open(os.path.join(STATE, "calls.jsonl"), "a") as f:
        f.write(json.dumps([name] + sys.argv[1:]) + "\n")


def queue():
    if not os.path.exists(QUEUE):
        return []
    with open(QUEUE) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def drain():
    """Run every queued task in submission order (array tasks, then the summary job)."""
    tasks = queue()
    os.remove(QUEUE) if os.path.exists(QUEUE) else None
    for t in tasks:
        env = dict(t["env"], SLURM_JOB_ID=str(t["job"]), SLURM_ARRAY_JOB_ID=str(t["job"]))
        if t["task"] is not None:
            env["SLURM_ARRAY_TASK_ID"] = str(t["task"])
        os.makedirs(os.path.dirname(t["output"]) or ".", exist_ok=True)
        with open(t["output"], "w") as out:
            subprocess.call(t["cmd"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=t["cwd"])
'''

SBATCH = COMMON + r'''
log_call("sbatch")
if os.environ.get("FAKE_SBATCH_FAIL"):
    print("sbatch: error: Batch job submission failed: " + os.environ["FAKE_SBATCH_FAIL"], file=sys.stderr)
    sys.exit(1)
args, opts = sys.argv[1:], {{}}
while args and args[0].startswith("--"):
    a = args.pop(0)
    if a == "--wrap":
        opts["--wrap"] = args.pop(0)
    else:
        k, _, v = a.partition("=")
        opts[k] = v
path = os.path.join(STATE, "next")
job = int(open(path).read()) if os.path.exists(path) else 4242
open(path, "w").write(str(job + 1))
output = opts.get("--output", "slurm-%A_%a.out")
if "--wrap" in opts:
    tasks = [(None, ["bash", "-c", opts["--wrap"]])]
else:
    first, _, last = opts["--array"].split("%")[0].partition("-")
    tasks = [(k, ["bash"] + args) for k in range(int(first), int(last or first) + 1)]
with open(QUEUE, "a") as f:
    for k, cmd in tasks:
        out = output.replace("%A", str(job)).replace("%a", str(k))
        f.write(json.dumps({{"job": job, "task": k, "state": "PENDING", "cmd": cmd, "output": out,
                            "cwd": os.getcwd(), "env": dict(os.environ)}}) + "\n")
print("{{}};fakecluster".format(job) if "--parsable" in opts else "Submitted batch job {{}}".format(job))
if os.environ.get("FAKE_SLURM_RUN") == "1":
    drain()
'''

SQUEUE = COMMON + r'''
log_call("squeue")
if os.environ.get("FAKE_SQUEUE_FAIL"):
    print("squeue: error: " + os.environ["FAKE_SQUEUE_FAIL"], file=sys.stderr)
    sys.exit(1)
assert "-r" in sys.argv and sys.argv[sys.argv.index("-o") + 1] == "%i|%T", sys.argv
for t in queue():
    if t["task"] is not None:
        print("{{}}_{{}}|{{}}".format(t["job"], t["task"], t["state"]))
'''

SCONTROL = r'''#!{python}
import sys
if sys.argv[1:3] == ["show", "config"]:
    print("ClusterName             = fakecluster")
    print("MaxArraySize            = 3")
'''

SLURMD = COMMON + r'''
drain()
'''

# PYTHON for the runs: train.py writes results.json (or fails on FAIL_RUN), --group trains each
# member; "-m ptnl.report ..." prints its arguments (the summary job's table stands in as that line).
PYTHON = r'''#!{python}
import json, os, sys
args = sys.argv[1:]


def train(argv):
    out = argv[argv.index("--output-dir") + 1]
    if os.path.isfile(os.path.join(out, "results.json")):
        print("Done already: " + out); return 0
    if "--dry-run" in argv:
        return 0
    os.makedirs(out, exist_ok=True)
    if os.environ.get("FAIL_RUN") and out.endswith(os.environ["FAIL_RUN"]):
        print("Error: failing on purpose"); return 1
    json.dump({{"accuracy": 50.0, "wall_time_s": 1800.0}}, open(os.path.join(out, "results.json"), "w"))
    return 0


if args[:1] == ["train.py"]:
    if "--group" in args:
        members = json.load(open(args[args.index("--group") + 1]))
        print("GROUP of {{}}".format(len(members)))
        sys.exit(max(train(m) for m in members))
    sys.exit(train(args))
print("REPORT " + json.dumps(args))
'''


@pytest.fixture
def cluster(tmp_path):
    """env for the scripts with the fake cluster on PATH, and helpers to read its state."""
    state, bin_dir = tmp_path / "slurm-state", tmp_path / "fakebin"
    state.mkdir()
    bin_dir.mkdir()
    for name, text in (("sbatch", SBATCH), ("squeue", SQUEUE), ("scontrol", SCONTROL), ("fake-slurmd", SLURMD),
                       ("fakepython", PYTHON)):
        p = bin_dir / name
        p.write_text(text.format(python=sys.executable))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH="{}:{}".format(bin_dir, os.environ["PATH"]), FAKE_SLURM=str(state),
               PYTHON=str(bin_dir / "fakepython"), PTNL_SWEEP_PYTHON=sys.executable, OUT=str(tmp_path / "out"),
               DATA="/data", SEEDS="1 2", SHOTS="16", CONFIGS="ClassifierR", RATES="0.0 0.5", LOSSES="ce",
               ENGINE="slurm", MAX_PARALLEL="2", SBATCH_ARGS="--time=30 --partition=gpu", SUMMARY="0")
    env.pop("CLIP_WEIGHTS", None)

    class Cluster:
        out = tmp_path / "out"

        def __init__(self):
            self.env = env

        def calls(self, name):
            path = state / "calls.jsonl"
            lines = path.read_text().splitlines() if path.exists() else []
            return [c[1:] for c in map(json.loads, lines) if c[0] == name]

        def queue(self):
            path = state / "queue.jsonl"
            return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []

        def set_state(self, job, task, value):
            q = self.queue()
            for t in q:
                if (t["job"], t["task"]) == (job, task):
                    t["state"] = value
            (state / "queue.jsonl").write_text("".join(json.dumps(t) + "\n" for t in q))

        def slurmd(self):
            subprocess.run([str(bin_dir / "fake-slurmd")], env=self.env, check=True, timeout=300)

        def grid(self, script="scripts/ptnl/ablation.sh", args=("dtd", "rn50"), **extra):
            return subprocess.run(["bash", script] + list(args), cwd=REPO, env=dict(self.env, **extra),
                                  capture_output=True, text=True, timeout=300)

        def status(self):
            proc = subprocess.run([sys.executable, "-m", "ptnl.sweep", "status", str(self.out)], cwd=REPO,
                                  env=self.env, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
            return proc.stdout
    return Cluster()


def opt(call, name):
    return next((a.partition("=")[2] for a in call if a.startswith(name + "=")), None)


def test_submission_queue_status_tasks_failure_and_resubmission(cluster):
    fail = "/sym-swap-0.5/ce/shots16/seed2"
    first = cluster.grid(FAIL_RUN=fail)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 runs: 0 done, 0 queued or running, 4 to submit" in first.stdout, first.stdout
    # MaxArraySize 3 (scontrol): two chunks, each numbered from 0 with its offset into the submission
    assert "submitted array job 4242 (--array=0-2%2): runs 1-3 of the 4 to submit" in first.stdout, first.stdout
    assert "submitted array job 4243 (--array=0-0%2): runs 4-4 of the 4 to submit" in first.stdout
    assert "summary job 4244 (afterany:4242:4243)" in first.stdout
    arrays, summary = cluster.calls("sbatch")[:2], cluster.calls("sbatch")[2]
    assert len(cluster.calls("sbatch")) == 3
    for call, offset in zip(arrays, ("0", "3")):
        assert "--gres=gpu:1" in call and "--time=30" in call and "--partition=gpu" in call, call
        assert call[-1] == offset and call[-3].endswith(".sbatch"), call  # SCRIPT SUBMISSION OFFSET
        assert opt(call, "--output").startswith(str(cluster.out / ".sweep" / "logs"))
    assert opt(summary, "--dependency") == "afterany:4242:4243" and "--gres=gpu:1" not in summary
    records = [json.loads(ln) for ln in (cluster.out / ".sweep" / "jobs.jsonl").read_text().splitlines()]
    assert [(r["job"], len(r["dirs"])) for r in records] == [("4242", 3), ("4243", 1)]

    # SLURM holds the four tasks: queued, then one running; nothing more to submit meanwhile
    st = cluster.status()
    assert "(4 runs): 0 done, 0 running, 4 queued, 0 failed, 0 missing" in st, st
    assert "queued: {}: job 4242_0 PENDING".format(records[0]["dirs"][0]) in st
    cluster.set_state(4243, 0, "RUNNING")
    st = cluster.status()
    assert "(4 runs): 0 done, 1 running, 3 queued, 0 failed, 0 missing" in st, st
    assert "running: {}: job 4243_0 RUNNING".format(records[1]["dirs"][0]) in st
    again = cluster.grid()
    assert again.returncode == 0 and "4 queued or running, 0 to submit" in again.stdout, again.stdout
    assert "nothing to submit" in again.stdout and len(cluster.calls("sbatch")) == 3
    dry = cluster.grid(DRY_RUN="1")
    assert "4 runs: 0 done, 4 queued or running, 0 to run with ENGINE=slurm" in dry.stdout, dry.stdout
    assert dry.stdout.count("  held ") == 4 and len(cluster.calls("sbatch")) == 3

    # the cluster runs the tasks (the .sbatch script -> python -m ptnl.sweep task), one fails on purpose
    cluster.slurmd()
    logs = sorted((cluster.out / ".sweep" / "logs").glob("*.out"))
    assert len(logs) == 4
    for rec in records:
        for k, d in enumerate(rec["dirs"]):
            log = rec["logs"].replace("%A", rec["job"]).replace("%a", str(k))
            assert open(log).read().startswith("Running: " + d), log
    st = cluster.status()
    assert "(4 runs): 3 done, 0 running, 0 queued, 1 failed, 0 missing" in st, st
    (failed,) = [ln for ln in st.splitlines() if ln.startswith("  failed: ")]
    assert fail in failed and "Error: failing on purpose" in failed, failed
    summary = next((cluster.out / ".sweep").glob("*.summary.out"))
    assert "REPORT" in summary.read_text() and summary.read_text().count("/seed") == 4, summary.read_text()
    summary.unlink()

    # the same command resubmits the failed run alone; the new summary table holds all four
    second = cluster.grid()
    assert "4 runs: 3 done, 0 queued or running, 1 to submit" in second.stdout, second.stdout
    assert "submitted array job 4245 (--array=0-0%2): runs 1-1 of the 1 to submit" in second.stdout
    assert "summary job 4246 (afterany:4245)" in second.stdout
    cluster.slurmd()
    assert "(4 runs): 4 done, 0 running, 0 queued, 0 failed, 0 missing" in cluster.status()
    assert summary.read_text().count("/seed") == 4  # the summary job ran again, after the resubmitted task
    third = cluster.grid()
    assert "4 runs: 4 done, 0 queued or running, 0 to submit" in third.stdout and len(cluster.calls("sbatch")) == 5


def test_grouped_runs_are_one_task_each(cluster):
    """PTNL's CE and GCE runs of one rate and seed share a data stream: one array task, one task log
    (``train.py --group``), and status still counts each run."""
    env = dict(CONFIGS="PTNL", LOSSES="ce gce", RATES="0.5", FAKE_SLURM_RUN="1", GROUP="1")
    proc = cluster.grid(**env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted array job 4242 (--array=0-1%2): tasks 1-2 of 2, for 4 of the 4 runs to submit" in proc.stdout
    logs = sorted((cluster.out / ".sweep" / "logs").glob("*.out"))
    assert len(logs) == 2 and all("GROUP of 2" in p.read_text() for p in logs), [p.read_text() for p in logs]
    assert all(p.read_text().count("Running: ") == 2 for p in logs)
    assert "(4 runs): 4 done, 0 running, 0 queued, 0 failed, 0 missing" in cluster.status()


def test_sbatch_or_squeue_refusing_is_one_line_and_leaves_nothing(cluster):
    """sbatch refusing (a wrong partition, no SLURM configuration) or squeue failing: one line, exit 1,
    no traceback; a command that submitted nothing leaves no plan, submission or script behind."""
    proc = cluster.grid(script="scripts/ptnl/main.sh", args=("dtd", "rn50", "0.5", "gce"),
                        FAKE_SBATCH_FAIL="Invalid partition name specified")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "[main] sbatch --array=0-1%2 failed (exit 1): sbatch: error: Batch job submission failed: Invalid partition "
        "name specified; nothing submitted (check SBATCH_ARGS and the cluster's sbatch configuration; the same "
        "command submits what is left)"], proc.stderr
    assert not (cluster.out / ".sweep").exists(), list(cluster.out.rglob("*"))
    assert "No plans under" in subprocess.run([sys.executable, "-m", "ptnl.sweep", "status", str(cluster.out)],
                                              cwd=REPO, env=cluster.env, capture_output=True, text=True).stderr

    assert cluster.grid(script="scripts/ptnl/main.sh", args=("dtd", "rn50", "0.5", "gce")).returncode == 0
    proc = cluster.grid(script="scripts/ptnl/main.sh", args=("dtd", "rn50", "0.5", "gce"),
                        FAKE_SQUEUE_FAIL="Unable to contact slurm controller")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "squeue failed (exit 1): squeue: error: Unable to contact slurm controller"], proc.stderr
    st = subprocess.run([sys.executable, "-m", "ptnl.sweep", "status", str(cluster.out)], cwd=REPO,
                        env=dict(cluster.env, FAKE_SQUEUE_FAIL="Unable to contact slurm controller"),
                        capture_output=True, text=True)
    assert st.returncode == 0 and "(queued and running runs not told apart)" in st.stderr, st.stderr
    assert "(2 runs): 0 done, 0 running, 0 queued, 0 failed, 2 missing" in st.stdout, st.stdout


def test_engine_slurm_without_sbatch_says_so(tmp_path, monkeypatch, capsys):
    """ENGINE=slurm where sbatch or squeue is missing: one line naming them, nothing written."""
    from ptnl.sweep import __main__ as sweep_main, slurm
    build = tmp_path / "build"
    build.write_text(json.dumps({"run": {"dir": str(tmp_path / "o" / "seed1"), "argv": ["python", "train.py"],
                                         "trainer": "PTNL", "loss": "ce", "rate": "0.5", "shots": "16",
                                         "seed": "1"}}) + "\n")
    monkeypatch.setenv("ENGINE", "slurm")
    monkeypatch.setattr(slurm, "available", lambda: False)
    rc = sweep_main.main(["run", str(build), "--out", str(tmp_path / "o"), "--name", "main"])
    assert rc == 2 and capsys.readouterr().err.strip() == \
        "ENGINE=slurm needs sbatch and squeue on PATH (run it on the cluster's login node)"
    assert not (tmp_path / "o").exists()
