"""Faults survived (issue 28; docs/guarantees.md lists each guarantee and its test here): hostile
and damaged files, a full disk, a diverged loss, two processes in one run folder, bad config values,
and runs stopped by SIGTERM / SIGUSR1 (local and on the single-node SLURM) or killed with SIGKILL
at random moments, which a re-run finishes with the uninterrupted run's weights and accuracy.

Time in CI on 2 cores (measured, pytest --durations): about 3 minutes in all; the interruption
chain about 40 s (six train.py processes, the uninterrupted reference included), the NaN and lock
tests about 10 s each, the SLURM test about 35 s (it releases the requeued job at once with
``scontrol update StartTime=now`` instead of waiting SLURM's two-minute requeue delay; skipped
where SLURM is not installed). On a machine busy with other work, up to 12 minutes."""
import errno
import glob
import io
import json
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, SMALL_OPTS, train_args

import train  # noqa: E402  (registers the datasets and trainers)
from ptnl import cli, compat
from ptnl.cli.parser import build_parser
from ptnl.config import ANY, VALUE_RULES, extend_cfg
from ptnl.errors import PTNLError
from ptnl.io import DiskFullError, cache, write_json_atomic
from ptnl.runs.files import DIVERGED_FILE, RESULTS_FILE, RunLocked, lock_run_dir, newest_checkpoint

EPOCHS = 5


def build(world, out, opts=()):
    """A PTNL trainer on the generated world, 3 epochs, every periodic checkpoint kept."""
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join(REPO, "configs/trainers/PTNL/rn50.yaml"))
    cfg.merge_from_list(["DATASET.ROOT", world["data"], "DATASET.NAME", "DescribableTextures",
                         "DATASET.NUM_SHOTS", 4, "SEED", 1, "TRAINER.NAME", "PTNL",
                         "MODEL.BACKBONE.NAME", world["clip"], "OUTPUT_DIR", str(out),
                         "DATASET.NOISE.RATE", 0.5, "OPTIM.MAX_EPOCH", 3, "TRAINER.PTNL.KEEP_CHECKPOINTS", 0]
                        + SMALL_OPTS + list(opts))
    cfg.freeze()
    compat.set_random_seed(1)
    return compat.build_trainer(cfg)


def stop_at(trainer, epoch, batch):
    """Make ``trainer`` raise KeyboardInterrupt (as Ctrl-C) at 0-based (epoch, batch)."""
    step = trainer.forward_backward

    def forward_backward(b):
        if (trainer.epoch, trainer.batch_idx) == (epoch, batch):
            raise KeyboardInterrupt
        return step(b)
    trainer.forward_backward = forward_backward


class Payload:
    """Unpickling this creates a file: the proof that a loader ran a pickle's code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


# ----------------------------------------------------------------------------- hostile files
def test_a_checkpoint_carrying_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    from ptnl.engine.utils import CheckpointError, load_checkpoint
    marker = tmp_path / "payload-ran"
    path = str(tmp_path / "model.pth.tar-1")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 1, "extra": Payload(str(marker))}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert not marker.exists()
    message = str(info.value)
    assert message.startswith('Refused to load checkpoint "{}"'.format(path)) and "\n" not in message
    assert "weights_only=True" in message and info.value.damaged is False


def test_checkpoints_load_through_the_allowed_globals_only(tmp_path):
    """A PTNL checkpoint (optimizer, scheduler, numpy random states) and a Dassl one (its scheduler's
    successor pickled whole, optimizer included) load with weights_only=True."""
    from ptnl.engine.utils import global_rng_state, load_checkpoint, save_checkpoint
    model = torch.nn.Linear(3, 2)
    optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optim.step()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, 10)
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 1, "optimizer": optim.state_dict(),
                     "scheduler": sched.state_dict(), "rng_state": global_rng_state()}, str(tmp_path))
    ours = load_checkpoint(str(tmp_path / "model.pth.tar-1"))
    assert torch.equal(ours["state_dict"]["weight"], model.weight.detach())
    import numpy as np
    assert np.array_equal(ours["rng_state"]["numpy"][1], np.random.get_state()[1])
    assert ours["scheduler"] == sched.state_dict()
    dassl = str(tmp_path / "dassl.pth.tar")
    torch.save({"state_dict": model.state_dict(), "epoch": 1, "optimizer": optim.state_dict(),
                "scheduler": {"successor": sched, "last_epoch": 1}}, dassl)
    assert load_checkpoint(dassl)["scheduler"]["last_epoch"] == 1


def test_a_cache_entry_carrying_a_payload_or_truncated_is_computed_again(tmp_path, capsys):
    root = str(tmp_path / "cache")
    marker = tmp_path / "payload-ran"
    cache.save("k", {"x": torch.arange(1000.0)}, root=root)
    path = cache.entry_path("k", root)
    blob = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(blob[:len(blob) // 2])
    assert cache.load("k", root=root) is None
    torch.save({"x": Payload(str(marker))}, path)
    assert cache.load("k", root=root) is None
    assert not marker.exists()
    said = capsys.readouterr()
    warnings = [ln for ln in (said.out + said.err).splitlines() if "cannot be read" in ln]
    assert len(warnings) == 2 and all(path in w and "\n" not in w for w in warnings)


# ----------------------------------------------------------------------------- damaged files
def test_truncated_checkpoint_fails_in_one_line_naming_it(tmp_path):
    from ptnl.engine.utils import CheckpointError, load_checkpoint, save_checkpoint
    save_checkpoint({"state_dict": {"w": torch.arange(5000.0)}, "epoch": 1}, str(tmp_path))
    path = str(tmp_path / "model.pth.tar-1")
    blob = open(path, "rb").read()
    for damaged in (blob[:len(blob) // 2], blob[:10], b""):
        with open(path, "wb") as f:
            f.write(damaged)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert path in str(info.value) and "\n" not in str(info.value) and info.value.damaged


def flip_a_byte_of(path):
    """Change one byte of the weights inside the checkpoint file (the zip stays valid)."""
    from ptnl.engine.utils import load_checkpoint
    state = load_checkpoint(path)["state_dict"]
    tensor = max(state.values(), key=lambda t: t.numel())
    blob = bytearray(open(path, "rb").read())
    at = blob.find(tensor.numpy().tobytes()[:64])
    assert at > 0
    blob[at + 3] ^= 0x40
    with open(path, "wb") as f:
        f.write(bytes(blob))


def test_a_damaged_checkpoint_is_set_aside_and_the_previous_one_resumed(world, tmp_path, capsys):
    """Checkpoints of epochs 1 and 2, the newest with one changed byte (its digest catches it, where
    torch.load alone would return the wrong number): resumed from epoch 1, ending exactly as an
    uninterrupted run."""
    whole = build(world, tmp_path / "whole")
    whole.train()
    out = tmp_path / "run"
    first = build(world, out)
    stop_at(first, 2, 1)
    with pytest.raises(KeyboardInterrupt):
        first.train()
    newest = str(out / "prompt_learner" / "model.pth.tar-2")
    flip_a_byte_of(newest)
    capsys.readouterr()
    again = build(world, out)
    again.train()
    said = capsys.readouterr().out
    assert again.start_epoch == 1
    assert 'Checkpoint "{}" is damaged'.format(newest) in said and "previous kept checkpoint" in said
    assert osp.isfile(newest + ".damaged")
    assert torch.equal(again.model.prompt_learner.ctx, whole.model.prompt_learner.ctx)
    assert again.last_test["accuracy"] == whole.last_test["accuracy"]


def test_a_damaged_results_file_is_named_and_kept(tmp_path):
    from ptnl.runs.identity import finished_run
    from ptnl.runs.read import load_run
    out = tmp_path / "run"
    out.mkdir()
    (out / RESULTS_FILE).write_text('{"accuracy": 51.2, "trai')
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.OUTPUT_DIR = str(out)
    code, message = finished_run(cfg)
    assert code == 3 and str(out / RESULTS_FILE) in message and "\n" not in message
    with pytest.raises(ValueError):  # python -m ptnl.report lists it as unreadable, never averages it
        load_run(str(out))
    assert (out / RESULTS_FILE).read_text() == '{"accuracy": 51.2, "trai'


# ----------------------------------------------------------------------------- full disk
def no_space_on_fsync(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_keeps_the_previous_file_and_names_the_space(tmp_path, monkeypatch):
    path = str(tmp_path / RESULTS_FILE)
    write_json_atomic(path, {"accuracy": 1.0})
    no_space_on_fsync(monkeypatch)
    with pytest.raises(DiskFullError) as info:
        write_json_atomic(path, {"accuracy": 2.0, "pad": "x" * 1000})
    needed = len(json.dumps({"accuracy": 2.0, "pad": "x" * 1000}, indent=1))
    message = str(info.value)
    assert message.startswith('No space to write "{}"'.format(path)) and "\n" not in message
    assert abs(info.value.needed - needed) < 64 and "free there" in message
    assert json.load(open(path)) == {"accuracy": 1.0}
    assert os.listdir(tmp_path) == [RESULTS_FILE]  # no temporary file left
    from ptnl.cli.exits import exit_line
    assert exit_line(info.value) == "Error: " + message
    # a cache that cannot be written is skipped, the run goes on
    assert cache.save("k", {"x": torch.zeros(3)}, root=str(tmp_path / "cache")) is False


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(world, tmp_path, monkeypatch):
    from ptnl.engine.utils import load_checkpoint
    trainer = build(world, tmp_path / "run")
    stop_at(trainer, 1, 1)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    folder = tmp_path / "run" / "prompt_learner"
    before = {f: open(folder / f, "rb").read() for f in os.listdir(folder)}
    no_space_on_fsync(monkeypatch)
    with pytest.raises(DiskFullError) as info:
        trainer.save_model(0, str(tmp_path / "run"))  # overwrite epoch 1's checkpoint
    assert str(folder / "model.pth.tar-1") in str(info.value)
    monkeypatch.undo()
    assert {f: open(folder / f, "rb").read() for f in os.listdir(folder)} == before
    assert load_checkpoint(str(folder / "model.pth.tar-1"))["epoch"] == 1


# ----------------------------------------------------------------------------- bad values
def _flat(node, prefix=""):
    out = {}
    for k, v in node.items():
        out.update(_flat(v, prefix + k + ".") if hasattr(v, "items") else {prefix + k: v})
    return out


# Values that are wrong in type (yacs) for a key whose default has this type.
WRONG_TYPE = {bool: "maybe", int: "many", float: "lots", str: "[1, 2]", tuple: "abc", list: "abc"}
# Candidates for values of the right type but out of range; each key gets those its rule refuses.
CANDIDATES = {int: [-100, -2, -1, 0, 1, 2, 10 ** 9], float: [-100.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 1e9],
              str: ["zzz", "", "TOPK", "fp8"], tuple: [(), (0, 0), (1, 2, 3), ("",), (-1, 32)],
              list: [[], [""], ["a", ""]]}
TYPE_ONLY = {"TRAINER.UPL.NUM_PER_CLASS"}  # every integer is valid (<= 0: DATASET.NUM_SHOTS)
# Boundaries stated independently of the rules (a rule too loose or too strict fails here).
BOUNDARIES = [("DATASET.NOISE.RATE", 1.0, 0.0), ("DATASET.NOISE.RATE", -0.1, 0.95), ("TRAINER.PTNL.N_CTX", -1, 0),
              ("TRAINER.PTNL.GCE_Q", 0.0, 1.0), ("DATASET.NUM_SHOTS", 0, -1), ("OPTIM.MAX_EPOCH", 0, 1),
              ("OPTIM.LR", 0.0, 1e-5), ("TRAINER.PTNL.PREC", "fp8", "bf16"), ("TRAINER.PTNL.KEEP_CHECKPOINTS", -1, 0),
              ("TRAINER.PTNL.RCE_A", 0.0, -4.0), ("DATALOADER.TRAIN_X.BATCH_SIZE", 0, 1),
              ("INPUT.SIZE", (32,), (32, 32)), ("TRAINER.PTNL.CACHE_VERIFY", "md5", "sha256"),
              ("DATALOADER.NUM_WORKERS", -1, 0), ("TRAINER.UPL.SELECTION", "best", "random")]


def _run_with(world, tmp_path, monkeypatch, key, value):
    """train.py's main in this process with ``key value`` on the command line: the user error it
    stops with (None if none), and whether it wrote anything."""
    out = tmp_path / "out"
    argv = train_args(world["data"], world["clip"], str(out), epochs=1)[1:]
    text = value if isinstance(value, str) else repr(value)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    try:
        cli.main(build_parser().parse_args(argv + [key, text]))
    except PTNLError as e:
        return str(e), out.exists()
    finally:
        monkeypatch.undo()
    return None, out.exists()


def test_every_added_config_key_has_a_value_rule():
    base = _flat(compat.get_cfg_default())
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    full = _flat(cfg)
    added = sorted(set(full) - set(base))
    assert len(added) > 40 and [k for k in added if k not in VALUE_RULES] == []
    assert [k for k in VALUE_RULES if k not in full] == []


def test_every_wrong_value_on_the_command_line_is_one_line_and_writes_nothing(world, tmp_path, monkeypatch):
    """Walks the whole table: each key of VALUE_RULES given a value of the wrong type, and each
    ranged key every candidate its rule refuses; then the stated boundaries both ways."""
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    flat = _flat(cfg)
    cases = []
    for key, rule in VALUE_RULES.items():
        kind = type(flat[key])
        cases.append((key, WRONG_TYPE[kind]))
        if rule is not ANY:
            wrong = [v for v in CANDIDATES[kind] if not rule[0](v)]
            assert wrong or key in TYPE_ONLY, "no candidate value breaks the rule of " + key
            cases += [(key, v) for v in wrong]
    cases += [(key, bad) for key, bad, _ in BOUNDARIES]
    for key, value in cases:
        error, wrote = _run_with(world, tmp_path, monkeypatch, key, value)
        assert error is not None, (key, value)
        assert key in error and "\n" not in error, (key, value, error)
        assert not wrote, (key, value)
    for key, _, good in BOUNDARIES:
        rule = VALUE_RULES[key]
        assert rule[0](good), (key, good)


# ----------------------------------------------------------------------------- run folder lock
def test_a_second_process_in_one_run_folder_refuses_and_a_dead_ones_lock_is_taken_over(world, tmp_path):
    out = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from ptnl.runs.files import lock_run_dir; "
                               "lock_run_dir(sys.argv[1]); print('locked', flush=True); time.sleep(600)", out],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked) as info:
            lock_run_dir(out)
        assert "pid {}".format(holder.pid) in str(info.value)
        proc = subprocess.run([sys.executable] + train_args(world["data"], world["clip"], out, epochs=1),
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2, proc.stderr[-2000:]
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
        assert len(errors) == 1 and "Run folder {} is in use by process pid {}".format(out, holder.pid) in errors[0]
        assert "Traceback" not in proc.stderr and osp.isdir(out)  # the holder's folder stays
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait()
    stale = osp.join(out, ".tmp-abc")
    open(stale, "w").close()  # what a write killed mid-way leaves
    lock_run_dir(out)  # taken over
    assert not osp.exists(stale)


# ----------------------------------------------------------------------------- diverged training
NAN_PLUGIN = '''"""PTNL_PLUGINS file for the tests: the loss becomes NaN at epoch NAN_EPOCH, batch NAN_BATCH."""
import os
from ptnl.trainers.base import PTNLTrainerBase
_step = PTNLTrainerBase.model_backward_and_update


def model_backward_and_update(self, loss, names=None):
    if (self.epoch + 1, self.batch_idx + 1) == (int(os.environ["NAN_EPOCH"]), int(os.environ["NAN_BATCH"])):
        loss = loss * float("nan")
    return _step(self, loss, names)


PTNLTrainerBase.model_backward_and_update = model_backward_and_update
'''


def test_a_nan_loss_stops_the_run_with_a_marker_and_exit_status_4(world, tmp_path):
    from ptnl.runs.read import incomplete_run
    plugin = tmp_path / "nan.py"
    plugin.write_text(NAN_PLUGIN)
    out = str(tmp_path / "run")
    env = dict(os.environ, PTNL_PLUGINS=str(plugin), NAN_EPOCH="2", NAN_BATCH="2")
    proc = subprocess.run([sys.executable] + train_args(world["data"], world["clip"], out, epochs=3), cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 4, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert errors[0].startswith("Error: Training diverged at epoch 2/3, batch 2/3: the loss is nan")
    assert "OPTIM.LR" in errors[0] and osp.join(out, DIVERGED_FILE) in errors[0]
    assert not osp.exists(osp.join(out, RESULTS_FILE))
    record = json.load(open(osp.join(out, DIVERGED_FILE)))
    assert record["diverged"] is True and (record["epoch"], record["batch"]) == (2, 2)
    assert record["seed"] == 1 and record["loss_value"] == "nan" and record["loss"] == "gce"
    listed = incomplete_run(out)  # python -m ptnl.report lists it as diverged, never averages it
    assert listed["diverged"] and listed["reason"].startswith("diverged: ")


# ----------------------------------------------------------------------------- interrupted runs
SLOW_PLUGIN = '''"""PTNL_PLUGINS file for the tests: each training step takes SLOW_STEP seconds longer."""
import os, time
from ptnl.trainers.base import PTNLTrainerBase
_step = PTNLTrainerBase.model_backward_and_update


def model_backward_and_update(self, loss, names=None):
    time.sleep(float(os.environ.get("SLOW_STEP", "0")))
    return _step(self, loss, names)


PTNLTrainerBase.model_backward_and_update = model_backward_and_update
'''


@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory):
    """The reference: one run of EPOCHS epochs, never interrupted."""
    out = str(tmp_path_factory.mktemp("uninterrupted") / "run")
    proc = subprocess.run([sys.executable] + run_args(world, out), cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def run_args(world, out):
    return train_args(world["data"], world["clip"], out, epochs=EPOCHS, rate=0.25)


def final_state(out):
    from ptnl.engine.utils import load_checkpoint
    results = json.load(open(osp.join(out, RESULTS_FILE)))
    ckpt = load_checkpoint(osp.join(out, "prompt_learner", "model.pth.tar-{}".format(EPOCHS)))
    return results, ckpt["state_dict"]


def assert_same_result(out, reference):
    (res, state), (ref, ref_state) = final_state(out), final_state(reference)
    assert res["accuracy"] == ref["accuracy"] and res["macro_f1"] == ref["macro_f1"]
    assert [e["loss"] for e in res["epochs"]] == [e["loss"] for e in ref["epochs"]]
    assert state.keys() == ref_state.keys() and all(torch.equal(state[k], ref_state[k]) for k in state)


def assert_nothing_half_written(out):
    """No results.json, and every checkpoint on disk loads (none truncated)."""
    from ptnl.engine.utils import load_checkpoint
    assert not osp.exists(osp.join(out, RESULTS_FILE))
    for path in glob.glob(osp.join(out, "*", "model.pth.tar-*")):
        assert load_checkpoint(path)["epoch"] >= 1
    pointer = osp.join(out, "prompt_learner", "checkpoint")
    if osp.isfile(pointer):
        assert osp.isfile(osp.join(out, "prompt_learner", open(pointer).read().strip()))


def start_and_stop(args, env, out, after_epoch, delay, how):
    """Start train.py, wait until the checkpoint of ``after_epoch`` is on disk (0: at once) and
    ``delay`` seconds more, then send signal ``how``; returns (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable] + args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while after_epoch and (newest_checkpoint(out) or 0) < after_epoch and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(how)
    _, stderr = proc.communicate(timeout=600)
    return proc.returncode, stderr


def test_runs_stopped_by_signals_and_killed_anywhere_end_as_the_uninterrupted_run(world, tmp_path, uninterrupted):
    """One run folder, interrupted again and again: SIGTERM (SLURM's preemption / scancel), SIGKILL
    at moments drawn from a fixed seed, SIGUSR1 (SLURM's warning before the time limit); each
    re-run resumes, and the last one ends with the uninterrupted run's weights and accuracy."""
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW_PLUGIN)
    env = dict(os.environ, PTNL_PLUGINS=str(plugin), SLOW_STEP="0.2", PTNL_REQUEUE="0")
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        env.pop(name, None)
    out = str(tmp_path / "run")
    args = run_args(world, out)
    draw = random.Random(28)

    code, stderr = start_and_stop(args, env, out, 1, draw.uniform(0, 1.0), signal.SIGTERM)
    lines = [ln for ln in stderr.splitlines() if ln.startswith("Interrupted at epoch")]
    assert code == 143 and len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert "by SIGTERM: the checkpoint of epoch {} is kept".format(newest_checkpoint(out)) in lines[0]
    assert open(osp.join(out, "log.txt")).read().splitlines()[-1] == lines[0]
    assert_nothing_half_written(out)

    for _ in range(2):  # killed anywhere: during start-up, mid-epoch, during a save
        resumed_from = newest_checkpoint(out) or 0
        code, _ = start_and_stop(args, env, out, draw.choice([0, resumed_from + 1]), draw.uniform(0, 3.0),
                                 signal.SIGKILL)
        assert code in (-signal.SIGKILL, 0)
        if code == 0:  # it finished first: nothing left to interrupt
            break
        assert_nothing_half_written(out)

    if not osp.exists(osp.join(out, RESULTS_FILE)):
        code, stderr = start_and_stop(args, env, out, (newest_checkpoint(out) or 0) + 1, draw.uniform(0, 1.0),
                                      signal.SIGUSR1)
        assert code in (138, 0), stderr[-3000:]
        if code == 138:
            assert "by SIGUSR1" in stderr and "Traceback" not in stderr
            assert_nothing_half_written(out)

    proc = subprocess.run([sys.executable] + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Found checkpoint at" in proc.stdout or "Done already" in proc.stdout
    assert_same_result(out, uninterrupted)
    assert not glob.glob(osp.join(out, ".tmp-*")) and not glob.glob(osp.join(out, "*", ".tmp-*"))


def test_slurm_preempted_job_is_requeued_and_resumes(slurm, world, tmp_path, uninterrupted):
    """On the single-node SLURM: ``sbatch --requeue``; SIGUSR1 to every process of the job (as
    ``--signal=USR1@T`` or ``scancel --signal``): the run saves, requeues its job and exits, SLURM
    starts it again, it resumes and ends as the uninterrupted run."""
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW_PLUGIN)
    out = str(tmp_path / "run")
    # exec: the job's batch process is train.py itself, so the signal reaches it and no shell around it
    command = "exec " + " ".join([sys.executable] + ["'{}'".format(a) for a in run_args(world, out)])
    env = dict(os.environ, PTNL_PLUGINS=str(plugin), SLOW_STEP="0.2", **slurm.env())  # threads as the reference's
    sub = subprocess.run(["sbatch", "--parsable", "--requeue", "--open-mode=append", "--job-name=preempt", "--output",
                          str(tmp_path / "job-%j.out"), "--chdir", REPO, "--wrap", command], env=env,
                         capture_output=True, text=True, timeout=120)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip().split(";")[0]
    deadline = time.time() + 600
    while (newest_checkpoint(out) or 0) < 1:
        assert time.time() < deadline, slurm.run("squeue").stdout
        time.sleep(0.2)
    assert slurm.run("scancel", "--signal=USR1", "--full", job).returncode == 0
    # SLURM holds a requeued job until a begin time about two minutes on: release it at once
    while True:
        state = slurm.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip()
        if state == "PENDING" and "requeued" in open(glob.glob(str(tmp_path / "job-*.out"))[0]).read():
            slurm.run("scontrol", "update", "JobId=" + job, "StartTime=now")
            break
        if not state:
            break
        assert time.time() < deadline, slurm.run("squeue").stdout
        time.sleep(0.2)
    assert slurm.wait_idle(600), slurm.run("squeue").stdout
    log = open(glob.glob(str(tmp_path / "job-*.out"))[0]).read()
    print(log[-3000:])
    assert "by SIGUSR1" in log and "SLURM job {} requeued".format(job) in log
    assert "Found checkpoint at" in log
    assert_same_result(out, uninterrupted)
