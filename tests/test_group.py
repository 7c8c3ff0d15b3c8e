"""Grouped runs (train.py --group, ptnl.trainers.group): members that share a data stream train in
one process and each ends exactly as it would alone (results, noise record, log, checkpoints);
resume works per member; the grouping rule keeps apart what does not share the stream; the grid
scripts group automatically (GROUP=0: off)."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from conftest import REPO, SMALL_OPTS, train_args
from ptnl import compat
from ptnl.sweep import group as sweep_group
from ptnl.trainers import group as trainer_group
from ptnl.trainers.base import PTNLTrainerBase

import train  # noqa: F401  (registers the datasets and trainers)
from ptnl import cli
from ptnl.cli.parser import build_parser
from ptnl.cli.setup import setup_cfg

LOSSES = ("ce", "gce", "mae")


def argv(world, out, loss, extra=()):
    return train_args(world["data"], world["clip"], str(out), loss=loss, epochs=3,
                      extra=["TRAIN.CHECKPOINT_FREQ", "1"] + list(extra))[1:]


_TEES = []


def run(args):
    """train.py in this process; stdout back to the terminal after (a lone run leaves its log's
    tee, kept alive here: Dassl's closes its console when collected)."""
    terminal = sys.stdout
    try:
        cli.main(build_parser().parse_args(args))
    finally:
        if sys.stdout is not terminal:
            sys.stdout.flush()
            _TEES.append(sys.stdout)
        sys.stdout = terminal


def run_group(world, tmp_path, name, losses=LOSSES):
    path = tmp_path / (name + ".json")
    path.write_text(json.dumps([argv(world, tmp_path / name / loss, loss) for loss in losses]))
    run(["--group", str(path)])


def ctx(out):
    return torch.load(osp.join(out, "prompt_learner", "model.pth.tar-3"), weights_only=False)["state_dict"]["ctx"]


def record(out):
    with open(osp.join(out, "results.json")) as f:
        return json.load(f)


def log_lines(out):
    """log.txt without timings, paths and the group's own line."""
    with open(osp.join(out, "log.txt")) as f:
        text = f.read().replace(str(out), "OUT")
    text = re.sub(r"(time|data) [0-9.]+ \([0-9.]+\)|eta [0-9:]+|Elapsed: .*", "", text)
    return [ln for ln in text.splitlines() if not ln.startswith(("Grouped with", "Creating a", "Saving preprocessed",
                                                                 "Loading preprocessed"))]


@pytest.fixture(scope="module")
def lone(world, tmp_path_factory):
    base = tmp_path_factory.mktemp("lone")
    for loss in LOSSES:
        run(argv(world, base / loss, loss))
    return {loss: str(base / loss) for loss in LOSSES}


def assert_same_as_lone(lone, out, loss):
    a, b = record(lone[loss]), record(out)
    assert a["accuracy"] == b["accuracy"]
    for ea, eb in zip(a["epochs"], b["epochs"]):
        assert abs(ea["loss"] - eb["loss"]) <= 1e-6 and ea["train_acc_given"] == eb["train_acc_given"]
    assert len(a["epochs"]) == len(b["epochs"]) == 3
    assert a["settings_digest"] == b["settings_digest"]
    assert (ctx(lone[loss]) - ctx(out)).abs().max().item() <= 1e-6  # measured: bit for bit equal
    with open(osp.join(lone[loss], "noise.json")) as fa, open(osp.join(out, "noise.json")) as fb:
        assert json.load(fa) == json.load(fb)


def test_three_loss_group_equals_lone_runs(world, tmp_path, lone):
    run_group(world, tmp_path, "g")
    for loss in LOSSES:
        out = str(tmp_path / "g" / loss)
        assert_same_as_lone(lone, out, loss)
        assert log_lines(lone[loss]) == log_lines(out)
        with open(osp.join(out, "log.txt")) as f:
            assert "Grouped with 2 other run(s) on one data stream" in f.read()


def test_interrupted_group_resumes_each_member_from_its_own_checkpoint(world, tmp_path, lone, monkeypatch):
    # mae ran alone first and was stopped in epoch 3: it holds the epoch-2 checkpoint, the others none
    step = PTNLTrainerBase.forward_backward
    stop = {"at": (2, 0)}

    def forward_backward(self, batch):
        if (self.epoch, self.batch_idx) == stop["at"]:
            stop["at"] = None
            raise KeyboardInterrupt
        return step(self, batch)
    monkeypatch.setattr(PTNLTrainerBase, "forward_backward", forward_backward)
    with pytest.raises(KeyboardInterrupt):
        run(argv(world, tmp_path / "g" / "mae", "mae"))
    # the group is stopped in its second epoch: each member's log says so
    stop["at"] = (1, 1)
    with pytest.raises(KeyboardInterrupt):
        run_group(world, tmp_path, "g")
    for loss in LOSSES:  # a resumed run writes log.txt-<time> beside the first log (Dassl's rule): the newest
        newest = max((tmp_path / "g" / loss).glob("log.txt*"), key=lambda p: p.stat().st_mtime_ns)
        with open(newest) as f:
            last = f.read().strip().splitlines()[-1]
        assert last.startswith("Interrupted at epoch"), (loss, last)
    # the same command resumes: ce, gce from epoch 1, mae from epoch 2; all end as they would alone
    run_group(world, tmp_path, "g")
    for loss in LOSSES:
        assert_same_as_lone(lone, str(tmp_path / "g" / loss), loss)
    logs = "".join(p.read_text() for p in (tmp_path / "g" / "mae").glob("log.txt*"))
    assert "Loading checkpoint" in logs and "model.pth.tar-2" in logs


def test_finished_member_leaves_the_group(world, tmp_path, lone, capsys):
    run(argv(world, tmp_path / "g" / "ce", "ce"))
    capsys.readouterr()
    run_group(world, tmp_path, "g", losses=("ce", "gce"))
    out = capsys.readouterr().out
    assert "Done already" in out
    assert_same_as_lone(lone, str(tmp_path / "g" / "gce"), "gce")


def cfg_of(world, out, loss="ce", extra=(), trainer="PTNL"):
    args = build_parser().parse_args(argv(world, out, loss, extra))
    args.trainer = trainer
    return setup_cfg(args)


def test_rule_groups_what_shares_the_stream_only(world, tmp_path):
    same = [cfg_of(world, tmp_path / str(i), loss) for i, loss in enumerate(("ce", "gce", "sce"))]
    other_lr = cfg_of(world, tmp_path / "lr", extra=["OPTIM.LR", "0.01"])  # own optimiser: same stream
    full = cfg_of(world, tmp_path / "full", trainer="FullPromptTuning")
    seed2 = cfg_of(world, tmp_path / "s2", extra=["SEED", "2"])
    rate = cfg_of(world, tmp_path / "r", extra=["DATASET.NOISE.RATE", "0.25"])
    coop = cfg_of(world, tmp_path / "coop", extra=["DATALOADER.RANDOMNESS", "coop"])
    batch = cfg_of(world, tmp_path / "b", extra=["DATALOADER.TRAIN_X.BATCH_SIZE", "4"])
    workers = cfg_of(world, tmp_path / "w", extra=["DATALOADER.NUM_WORKERS", "2"])
    probe = cfg_of(world, tmp_path / "lp", trainer="LinearProbe")
    cfgs = same + [other_lr, full, seed2, rate, coop, batch, workers, probe]
    assert trainer_group.partition(cfgs) == [[0, 1, 2, 3, 4, 9], [5], [6], [7], [8], [10]]
    assert not trainer_group.groupable(coop)[0] and not trainer_group.groupable(probe)[0]


def test_sweep_list_of_groupable_trainers_matches_the_classes():
    import datasets  # noqa: F401
    import trainers.ptnl  # noqa: F401
    names = set(compat.TRAINER_REGISTRY.registered_names())
    flagged = {n for n in names if getattr(compat.TRAINER_REGISTRY.get(n), "GROUPABLE", False)}
    # the sweep's set is read from the classes' source (no torch there), not kept by hand
    assert flagged == sweep_group.groupable_trainers(files=[]) & names and {"PTNL", "CLSTuning"} <= flagged


def test_sweep_proposes_groups_from_command_lines():
    def run_(trainer, loss, seed="1", extra=()):
        return {"argv": ["python", "train.py", "--root", "D", "--seed", seed, "--trainer", trainer,
                         "--config-file", "configs/trainers/{}/rn50.yaml".format(trainer),
                         "--output-dir", "o/{}/{}/{}".format(trainer, loss, seed),
                         "DATASET.NUM_SHOTS", "16", "TRAINER.PTNL.LOSS", loss] + list(extra)}
    runs = [run_("PTNL", "ce"), run_("PTNL", "gce"), run_("LinearProbe", "ce"), run_("PTNL", "ce", "2"),
            run_("FullPromptTuning", "gce"), run_("PTNL", "sce", extra=["OPTIM.LR", "0.1"]), run_("PTNL", "mae", "2")]
    assert sweep_group.propose(runs, list(range(7))) == [[0, 1, 4], [2], [3, 6], [5]]
    assert sweep_group.propose(runs, [0, 1, 4], max_size=2) == [[0, 1], [4]]


@pytest.mark.parametrize("engine", ["local", "gpus"])
def test_grid_script_groups_runs_that_share_a_stream(world, tmp_path, engine):
    """ablation.sh's PTNL runs of one rate and seed go to one process (ENGINE=gpus: on one GPU);
    each keeps its progress line and its results equal a lone run's (GROUP=0, one process a run, is
    what the fake-train.py tests of test_scripts_ux.py and test_sweep.py run)."""
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path / "out"), DATA=world["data"],
               CLIP_WEIGHTS=world["clip"], CONFIGS="PTNL", RATES="0.5", LOSSES="ce gce", SEEDS="1", SHOTS="4",
               ENGINE=engine, GPUS="0 1")
    cmd = ["bash", "scripts/ptnl/ablation.sh", "dtd", "rn50", "OPTIM.MAX_EPOCH", "1"] + SMALL_OPTS
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i in (1, 2):
        assert re.search(r"\[ablation\] run {}/2 .*\(1 of 2 runs in one process, one data stream\)".format(i),
                         proc.stdout)
    if engine == "gpus":  # the group's output went to its log
        logs = list((tmp_path / "out" / ".sweep" / "logs").glob("*.out"))
        assert len(logs) == 1 and "done on GPU 0" in proc.stdout
        proc.stdout = logs[0].read_text()
    assert proc.stdout.count("Grouped with 1 other run(s)") == 2
    for loss in ("ce", "gce"):
        found = [p for p in (tmp_path / "out").rglob("results.json") if "/{}/".format(loss) in str(p)]
        assert len(found) == 1
        lone = tmp_path / "lone" / loss
        run(argv(world, lone, loss, ["OPTIM.MAX_EPOCH", "1"]))
        assert record(str(found[0].parent))["accuracy"] == record(str(lone))["accuracy"]
    assert sweep_group.enabled({}) and not sweep_group.enabled({"GROUP": "0"})


def test_slurm_array_task_trains_the_runs_that_share_a_stream(slurm, world, tmp_path):
    """ENGINE=slurm: ablation.sh's two PTNL runs of one rate and seed are one array task
    (train.py --group); its log holds both members, status counts each run, and each result
    equals a lone run's."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, PTNL_SWEEP_PYTHON=sys.executable, OUT=str(out),
               DATA=world["data"], CLIP_WEIGHTS=world["clip"], CONFIGS="PTNL", RATES="0.5", LOSSES="ce gce",
               SEEDS="1", SHOTS="4", ENGINE="slurm", SBATCH_ARGS="--time=30", OMP_NUM_THREADS="1")
    cmd = ["bash", "scripts/ptnl/ablation.sh", "dtd", "rn50", "OPTIM.MAX_EPOCH", "1"] + SMALL_OPTS
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "(--array=0-0): tasks 1-1 of 1, for 2 of the 2 runs to submit" in proc.stdout, proc.stdout
    assert slurm.wait_idle(900), slurm.run("squeue").stdout
    logs = [p for p in (out / ".sweep" / "logs").glob("*.out")]
    assert len(logs) == 1
    text = logs[0].read_text()
    assert text.count("Grouped with 1 other run(s)") == 2 and text.count("Running: ") == 2, text[-3000:]
    status = subprocess.run([sys.executable, "-m", "ptnl.sweep", "status", str(out)], cwd=REPO,
                            capture_output=True, text=True).stdout
    assert "(2 runs): 2 done, 0 running, 0 queued, 0 failed, 0 missing" in status, status
    for loss in ("ce", "gce"):
        found = [p for p in out.rglob("results.json") if "/{}/".format(loss) in str(p)]
        assert len(found) == 1
        lone = tmp_path / "lone" / loss
        run(argv(world, lone, loss, ["OPTIM.MAX_EPOCH", "1"]))
        assert record(str(found[0].parent))["accuracy"] == record(str(lone))["accuracy"]
