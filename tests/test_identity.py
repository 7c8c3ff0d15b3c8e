"""A run's identity (issue 14, item 1): results.json records the flat config and a settings digest;
train.py skips a finished run of the same settings and stops naming the keys when they differ
(main.sh passes that on); ptnl.report never averages runs of other settings."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from conftest import REPO, SMALL_OPTS, run_py, train_args
from ptnl.report.cli import main as report_main
from ptnl.runs.identity import (NON_RESULT_KEYS, config_diff, finished_run, flat_config, result_settings,
                                settings_digest)


def resolved_cfg(args):
    """The config train.py would resolve for ``args`` (train.py's own code, nothing trained)."""
    sys.path.insert(0, REPO)
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        import train  # noqa: F401  (registers the datasets and trainers)
        from ptnl.cli.parser import build_parser
        from ptnl.cli.setup import setup_cfg
        return setup_cfg(build_parser().parse_args(args[1:]))
    finally:
        os.chdir(cwd)


def write_finished(cfg, acc=50.0, **extra):
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    flat = flat_config(cfg)
    record = {"accuracy": acc, "seed": cfg.SEED, "config": flat, "settings_digest": settings_digest(flat)}
    record.update(extra)
    with open(osp.join(cfg.OUTPUT_DIR, "results.json"), "w") as f:
        json.dump(record, f)


# ----------------------------------------------------------------------------- pure functions
def test_flat_config_digest_and_diff():
    cfg = {"SEED": 1, "OUTPUT_DIR": "a", "OPTIM": {"MAX_EPOCH": 2, "LR": 0.002}, "INPUT": {"SIZE": (32, 32)},
           "DATASET": {"ROOT": "/x", "NOISE": {"RATE": 0.5}},
           "DATALOADER": {"NUM_WORKERS": 8, "RANDOMNESS": "per_sample"}}
    flat = flat_config(cfg)
    assert flat["OPTIM.MAX_EPOCH"] == 2 and flat["INPUT.SIZE"] == [32, 32] and flat["DATASET.NOISE.RATE"] == 0.5
    assert json.loads(json.dumps(flat)) == flat
    other_place = flat_config(dict(cfg, SEED=2, OUTPUT_DIR="b", DATASET={"ROOT": "/y", "NOISE": {"RATE": 0.5}},
                                   DATALOADER={"NUM_WORKERS": 0, "RANDOMNESS": "per_sample"}))
    assert settings_digest(flat) == settings_digest(other_place)  # seed, folders, workers: not results
    coop = [flat_config(dict(cfg, DATALOADER={"NUM_WORKERS": w, "RANDOMNESS": "coop"})) for w in (0, 8)]
    assert settings_digest(coop[0]) != settings_digest(coop[1])  # CoOp's stream changes with the workers
    assert config_diff(*coop) == [("DATALOADER.NUM_WORKERS", 0, 8)]
    longer = flat_config(dict(cfg, OPTIM={"MAX_EPOCH": 5, "LR": 0.002}))
    assert settings_digest(flat) != settings_digest(longer)
    assert config_diff(flat, longer) == [("OPTIM.MAX_EPOCH", 2, 5)]
    assert config_diff(flat, dict(flat, NEW=1)) == [("NEW", "(absent)", 1)]
    # a key added after a run was recorded: equal when asked at its default, except where the key's
    # introduction changed the default behaviour (older runs used Dassl's stream)
    assert config_diff(flat, dict(flat, NEW=1), defaults={"NEW": 1}) == []
    assert config_diff(flat, dict(flat, NEW=2), defaults={"NEW": 1}) == [("NEW", 1, 2)]
    old = {k: v for k, v in flat.items() if k != "DATALOADER.RANDOMNESS"}
    assert config_diff(old, flat, defaults={"DATALOADER.RANDOMNESS": "per_sample"}) == [
        ("DATALOADER.RANDOMNESS", "coop", "per_sample")]
    assert "SEED" in NON_RESULT_KEYS and "SEED" not in result_settings(flat)


# ----------------------------------------------------------------------------- train.py
def test_train_py_records_config_skips_same_and_stops_on_other_settings(world, tmp_path):
    out = str(tmp_path / "run")
    run_py(train_args(world["data"], world["clip"], out, epochs=1, shots=2))
    res = json.load(open(osp.join(out, "results.json")))
    assert res["config"]["OPTIM.MAX_EPOCH"] == 1 and res["config"]["SEED"] == 1
    assert res["settings_digest"] == settings_digest(res["config"])
    mtime = osp.getmtime(osp.join(out, "results.json"))

    same = run_py(train_args(world["data"], world["clip"], out, epochs=1, shots=2,
                             extra=["DATALOADER.NUM_WORKERS", "0", "TRAIN.PRINT_FREQ", "7"]))
    assert same.stdout.strip() == "Done already: {}".format(out)
    assert osp.getmtime(osp.join(out, "results.json")) == mtime

    other = run_py(train_args(world["data"], world["clip"], out, epochs=2, shots=2), check=False)
    assert other.returncode == 3, other.stdout + other.stderr
    assert "OPTIM.MAX_EPOCH: stored 1, requested 2" in other.stderr
    assert "OUT=" in other.stderr and "VARIANT=" in other.stderr and "--output-dir" in other.stderr
    assert osp.getmtime(osp.join(out, "results.json")) == mtime


def test_legacy_results_compare_by_config_digest(world, tmp_path):
    from ptnl.runs.files import config_digest
    cfg = resolved_cfg(train_args(world["data"], world["clip"], str(tmp_path / "run"), epochs=2))
    os.makedirs(cfg.OUTPUT_DIR)
    path = osp.join(cfg.OUTPUT_DIR, "results.json")
    json.dump({"accuracy": 40.0, "config_digest": config_digest(cfg)}, open(path, "w"))
    assert finished_run(cfg) == (0, "Done already: {}".format(cfg.OUTPUT_DIR))
    json.dump({"accuracy": 40.0, "config_digest": "0" * 64}, open(path, "w"))
    code, msg = finished_run(cfg)
    assert code == 3 and "predates per-key records" in msg and "settings differ" in msg
    json.dump({"accuracy": 40.0}, open(path, "w"))  # nothing to compare: done, as before
    assert finished_run(cfg)[0] == 0
    assert finished_run(resolved_cfg(train_args(world["data"], world["clip"], str(tmp_path / "new"))))[0] is None


# ----------------------------------------------------------------------------- main.sh
def test_main_sh_skips_same_settings_and_stops_on_other_ones(world, tmp_path):
    """The issue's walk-through: seed 1 trained with 2 epochs, then SEEDS="1 2" with 5 epochs."""
    out = str(tmp_path / "out")
    env = dict(os.environ, DATA=world["data"], CLIP_WEIGHTS=world["clip"], SEEDS="1", SHOTS="4", OUT=out,
               PYTHON=sys.executable, SUMMARY="0")
    seed1 = osp.join(out, "dtd", "PTNL", "clip-vit", "sym-swap-0.5", "gce", "shots4_nctx16_cscFalse_ctpend", "seed1")
    args = train_args(world["data"], world["clip"], seed1, shots=4, rate=0.5, loss="gce", epochs=2)
    args += ["TRAINER.PTNL.N_CTX", "16", "TRAINER.PTNL.CSC", "False", "TRAINER.PTNL.CLASS_TOKEN_POSITION", "end"]
    write_finished(resolved_cfg(args))

    def main_sh(epochs, seeds="1"):
        cmd = ["bash", "scripts/ptnl/main.sh", "dtd", "rn50", "0.5", "gce", "OPTIM.MAX_EPOCH", epochs] + SMALL_OPTS
        return subprocess.run(cmd, cwd=REPO, env=dict(env, SEEDS=seeds), capture_output=True, text=True, timeout=300)

    same = main_sh("2")
    assert same.returncode == 0, same.stderr
    assert same.stdout.strip() == "Done already, skipping: {}".format(seed1)
    other = main_sh("5", seeds="1 2")
    assert other.returncode == 3, other.stdout + other.stderr
    assert "OPTIM.MAX_EPOCH: stored 2, requested 5" in other.stderr
    assert "main.sh: stopped at {}".format(seed1) in other.stderr
    assert not osp.exists(seed1.replace("seed1", "seed2"))  # stopped before the next seed


# ----------------------------------------------------------------------------- ptnl.report
def _result(d, seed, acc, epochs=None, rate=0.5):
    os.makedirs(d, exist_ok=True)
    rec = {"accuracy": acc, "trainer": "PTNL", "dataset": "DescribableTextures", "backbone": "RN50", "seed": seed,
           "num_shots": 16, "noise": {"type": "sym", "mode": "swap", "rate": rate}, "loss": "gce",
           "prompt": {"n_ctx": 16, "csc": False, "class_token_position": "end", "ctx_init": ""}, "gce_q": 0.7}
    if epochs is not None:
        flat = {"SEED": seed, "OUTPUT_DIR": d, "OPTIM.MAX_EPOCH": epochs, "DATASET.NOISE.RATE": rate}
        rec.update(config=flat, settings_digest=settings_digest(flat))
    json.dump(rec, open(osp.join(d, "results.json"), "w"))


def test_report_never_averages_other_settings(tmp_path, capsys):
    base = tmp_path / "dtd/PTNL/rn50/sym-swap-0.5/gce/shots16_nctx16_cscFalse_ctpend"
    _result(str(base / "seed1"), 1, 43.33, epochs=2)
    _result(str(base / "seed2"), 2, 45.83, epochs=5)
    _result(str(base / "seed3"), 3, 46.0, epochs=5)
    assert report_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "44.58" not in out and "45.05" not in out  # no mean over 2- and 5-epoch runs
    assert "43.33 (n=1)" in out and "45.91 ± 0.09" in out
    assert "OPTIM.MAX_EPOCH=2" in out and "OPTIM.MAX_EPOCH=5" in out
    assert "OPTIM.MAX_EPOCH=2 vs OPTIM.MAX_EPOCH=5" in out and "not averaged together" in out
    assert "16 shots n_ctx 16 (OPTIM.MAX_EPOCH=2): seed 2 (no run found)" in out
    assert report_main([str(tmp_path), "--pivot"]) == 0
    pivot = capsys.readouterr().out
    assert "OPTIM.MAX_EPOCH=2" in pivot and "43.33 (n=1" in pivot and "45.91 ± 0.09 (2 of 3)" in pivot


def test_report_same_settings_other_seeds_average_and_legacy_as_before(tmp_path, capsys):
    base = tmp_path / "dtd/PTNL/rn50/sym-swap-0.5/gce/shots16_nctx16_cscFalse_ctpend"
    _result(str(base / "seed1"), 1, 40.0, epochs=5)
    _result(str(base / "seed2"), 2, 42.0, epochs=5)
    legacy = tmp_path / "old/dtd/PTNL/rn50/sym-swap-0.25/gce/shots16_nctx16_cscFalse_ctpend"
    _result(str(legacy / "seed1"), 1, 50.0, rate=0.25)
    _result(str(legacy / "seed2"), 2, 52.0, rate=0.25)
    assert report_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "41.00 ± 1.00" in out and "51.00 ± 1.00" in out and "not averaged together" not in out
    assert "settings" not in out.splitlines()[0]


def test_report_legacy_run_beside_recorded_one_is_kept_apart(tmp_path, capsys):
    base = tmp_path / "dtd/PTNL/rn50/sym-swap-0.5/gce/shots16_nctx16_cscFalse_ctpend"
    _result(str(base / "seed1"), 1, 40.0)  # written before results.json kept its config
    _result(str(base / "seed2"), 2, 44.0, epochs=5)
    assert report_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "42.00" not in out and "40.00 (n=1)" in out and "44.00 (n=1)" in out
    assert "settings not recorded" in out
