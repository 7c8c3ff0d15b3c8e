"""ENGINE=gpus with several runs at once on one GPU (issue 33, "a GPU kept busy"): SLOTS_PER_GPU=N
puts N processes on each GPU of GPUS; unset or ``auto`` reads each GPU's free memory from
``nvidia-smi`` (faked here on PATH) over GPU_RUN_MB, and is 1 where nvidia-smi does not answer (a
CPU machine). The runs are a fake PYTHON's, as in tests/test_sweep.py."""
import json
import os
import stat
import subprocess
import sys

import pytest

from conftest import REPO
from ptnl.sweep import engines

FAKE = r'''#!{python}
"""Fake PYTHON for train.py: records CUDA_VISIBLE_DEVICES and its start and end; waits (up to 4 s)
until another run has started, so runs that may overlap do."""
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
    starts = os.environ["STARTS"]
    open(os.path.join(starts, str(os.getpid())), "w").close()
    while time.time() < t0 + 4 and len(os.listdir(starts)) < 2:
        time.sleep(0.05)
    time.sleep(0.5)
    with open(os.environ["FAKELOG"], "a") as f:
        f.write(json.dumps([out, os.environ.get("CUDA_VISIBLE_DEVICES"), t0, time.time()]) + "\n")
    json.dump({{"accuracy": 50.0, "wall_time_s": 1.0}}, open(os.path.join(out, "results.json"), "w"))
'''


@pytest.fixture
def fake_env(tmp_path):
    path = tmp_path / "fakepython"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "starts").mkdir()
    return dict(os.environ, PYTHON=str(path), FAKELOG=str(tmp_path / "fake.log"), OUT=str(tmp_path / "out"),
                STARTS=str(tmp_path / "starts"), DATA="/data", SEEDS="1 2", SHOTS="16", CONFIGS="ClassifierR",
                RATES="0.0 0.5", LOSSES="ce", GROUP="0", ENGINE="gpus")


def ablation(env, **extra):
    return subprocess.run(["bash", "scripts/ptnl/ablation.sh", "dtd", "rn50"], cwd=REPO, env=dict(env, **extra),
                          capture_output=True, text=True, timeout=300)


def most_at_once(spans):
    """The largest number of (start, end) spans that overlap at one moment."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    now = best = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return best


def fake_nvidia_smi(folder, text):
    """An ``nvidia-smi`` on PATH that prints ``text`` (index, free MB lines), like the real one's
    ``--query-gpu=index,memory.free --format=csv,noheader,nounits``."""
    folder.mkdir(exist_ok=True)
    path = folder / "nvidia-smi"
    path.write_text("#!/bin/sh\nprintf '{}'\n".format(text.replace("\n", "\\n")))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(folder) + os.pathsep + os.environ.get("PATH", "")


def test_slots_per_gpu_runs_two_at_once_on_one_gpu(fake_env):
    proc = ablation(fake_env, GPUS="5", SLOTS_PER_GPU="2")
    assert proc.returncode == 0, proc.stderr
    runs = [json.loads(ln) for ln in open(fake_env["FAKELOG"])]
    assert len(runs) == 4 and {r[1] for r in runs} == {"5"}
    # two runs share GPU 5 at a time, never three (one slot: each run waits 4 s alone, never two)
    assert most_at_once([(r[2], r[3]) for r in runs]) == 2, runs
    assert "[ablation] runs at once on each GPU: GPU 5 2" in proc.stdout
    assert "[ablation] 4/4 runs done, 0 failed" in proc.stdout


def test_auto_slots_from_free_memory(tmp_path, fake_env):
    path = fake_nvidia_smi(tmp_path / "bin", "0, 81000\n1, 5000\n2, 40000\n")
    env = dict(PATH=path, GPU_RUN_MB="10000")
    assert engines.gpu_slots(["0", "1", "2"], env=env) == {"0": 4, "1": 1, "2": 4}  # 8 fit on GPU 0: at most 4
    assert engines.gpu_slots(["0", "2"], largest_unit=2, env=env) == {"0": 4, "2": 2}  # a group of 2 counts twice
    assert engines.gpu_slots(["0", "1"], env=dict(env, SLOTS_PER_GPU="3")) == {"0": 3, "1": 3}
    assert engines.gpu_slots(["0", "7"], env=dict(env, GPU_RUN_MB="30000")) == {"0": 2, "7": 1}  # 7 unreported
    # the grid scripts: GPU 0 reported with room for 2, so two runs at once there
    proc = ablation(fake_env, GPUS="0", PATH=fake_nvidia_smi(tmp_path / "bin2", "0, 13000\n"), GPU_RUN_MB="6000")
    assert proc.returncode == 0, proc.stderr
    runs = [json.loads(ln) for ln in open(fake_env["FAKELOG"])]
    assert len(runs) == 4 and most_at_once([(r[2], r[3]) for r in runs]) == 2, runs


def test_no_nvidia_smi_means_one_slot_and_bad_settings_are_one_line(tmp_path, fake_env):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert engines.gpu_slots(["0", "1"], env=dict(PATH=str(empty))) == {"0": 1, "1": 1}
    failing = fake_nvidia_smi(tmp_path / "bin", "")
    (tmp_path / "bin" / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert engines.gpu_slots(["0"], env=dict(PATH=failing)) == {"0": 1}
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="SLOTS_PER_GPU={!r}: expected a whole number >= 1".format(bad)):
            engines.gpu_slots(["0"], env=dict(SLOTS_PER_GPU=bad))
    proc = ablation(fake_env, GPUS="0", SLOTS_PER_GPU="x")
    assert proc.returncode == 2
    assert "SLOTS_PER_GPU='x': expected a whole number >= 1" in proc.stderr
    assert not os.path.exists(fake_env["FAKELOG"])
