"""The scripts as a user meets them (issue 14, items 2-7 and 10-12): usage, Retrying/Resuming, one
folder per rate however it is written, relative paths, run count and ETA of every grid, a grid's
table of its own runs, folder names (weights name, no prompt settings where none are used), the
listing of failed and interrupted runs, a stray log hiding nothing, and the report polish
(ensemble rows, UPL's selection message, the cache report). Training is replaced by a fake
PYTHON that writes results.json, so these take seconds."""
import json
import os
import os.path as osp
import re
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO
from ptnl.report.cli import main as report_main
from ptnl.runs.layout import parse_run_path, rate_name

FAKE = r'''#!{python}
"""Fake PYTHON: logs its arguments; train.py writes results.json (or says Done already), -m logs."""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKELOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
if args and args[0] == "train.py" and "--dry-run" not in args:
    out = args[args.index("--output-dir") + 1]
    if os.path.isfile(os.path.join(out, "results.json")):
        print("Done already: " + out)
    else:
        os.makedirs(out, exist_ok=True)
        json.dump({{"accuracy": 50.0}}, open(os.path.join(out, "results.json"), "w"))
'''


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "fakepython"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "fake.log"

    def run(script, args, cwd=REPO, **env):
        full = dict(os.environ, PYTHON=str(path), FAKELOG=str(log), OUT=str(tmp_path / "out"), DATA="/data",
                    SEEDS="1", SHOTS="16", GROUP="0")  # the fake train.py runs one run a call (no --group)
        full.pop("CLIP_WEIGHTS", None)
        full.update(env)
        proc = subprocess.run(["bash", osp.join(REPO, script)] + list(args), cwd=cwd, env=full, capture_output=True,
                              text=True, timeout=120)
        calls = [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []
        if log.exists():
            log.unlink()
        return proc, calls
    return run


def out_dir(calls):
    return [c[c.index("--output-dir") + 1] for c in calls if c[0] == "train.py"]


def reports(calls):
    return [c for c in calls if c[:2] in (["-m", "ptnl.report"], ["-m", "ptnl.report.ensemble"])]


# ----------------------------------------------------------------------------- usage
@pytest.mark.parametrize("script", ["scripts/ptnl/main.sh", "scripts/ptnl/sweep.sh", "scripts/ptnl/ablation.sh",
                                    "scripts/ptnl/ctx_length.sh", "scripts/upl/main.sh", "scripts/ptnl/base2new.sh",
                                    "scripts/ptnl/xd.sh"])
def test_usage_is_the_comment_block_only(fake, script):
    proc, calls = fake(script, [])
    assert proc.returncode == 2 and not calls
    lines = open(osp.join(REPO, script)).read().splitlines()
    block = []
    for ln in lines[1:]:
        if not ln.startswith("#"):
            break
        block.append(re.sub(r"^# ?", "", ln))
    assert proc.stdout.splitlines() == block
    assert "set -euo" not in proc.stdout and "cd " not in proc.stdout and "source" not in proc.stdout


# ----------------------------------------------------------------------------- Retrying / Resuming
def test_retrying_without_checkpoint_resuming_with_one(fake, tmp_path):
    proc, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "ce"], SUMMARY="0")
    run = out_dir(calls)[0]
    assert "Running: {}".format(run) in proc.stdout
    os.remove(osp.join(run, "results.json"))
    open(osp.join(run, "log.txt"), "w").write("Error: boom\n")
    proc, _ = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "ce"], SUMMARY="0")
    assert "Retrying: {}".format(run) in proc.stdout and "Resuming" not in proc.stdout
    os.remove(osp.join(run, "results.json"))
    os.makedirs(osp.join(run, "prompt_learner"))
    for e in (2, 10, 3):
        open(osp.join(run, "prompt_learner", "model.pth.tar-{}".format(e)), "w").close()
    proc, _ = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "ce"], SUMMARY="0")
    assert "Resuming: {} (from epoch 10)".format(run) in proc.stdout
    proc, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "ce"], SUMMARY="0")
    assert proc.stdout.strip() == "Done already, skipping: {}".format(run)


# ----------------------------------------------------------------------------- rates
def test_rate_spellings_map_to_one_folder(fake, tmp_path):
    dirs = set()
    for rate in ("0.5", "0.50", ".5", "0.500"):
        proc, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", rate, "gce"], SUMMARY="0", DRY_RUN="1")
        assert proc.returncode == 0, proc.stderr
        dirs.update(out_dir(calls))
    assert len(dirs) == 1 and "/sym-swap-0.5/" in dirs.pop()
    proc, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0", "gce"], SUMMARY="0", DRY_RUN="1")
    assert "/sym-swap-0.0/" in out_dir(calls)[0]


def test_rate_folders_written_the_old_way_are_still_found(fake, tmp_path):
    old = tmp_path / "out/dtd/PTNL/rn50/sym-swap-0.50/gce/shots16_nctx16_cscFalse_ctpend/seed1"
    old.mkdir(parents=True)
    (old / "results.json").write_text('{"accuracy": 40.0}')
    proc, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "gce"], SUMMARY="0")
    assert proc.stdout.strip() == "Done already, skipping: {}".format(old)
    assert parse_run_path(str(old))["noise_rate"] == 0.5


def test_shell_and_python_rates_agree():
    rates = ["0", "0.0", ".5", "0.50", "0.500", "00.25", "1", "0.125", "0.0001", "0.00001", "1e-1", "0.3333"]
    script = 'source scripts/ptnl/lib.sh; for r in "$@"; do ptnl_rate "$r"; done'
    out = subprocess.run(["bash", "-c", script, "x"] + rates, cwd=REPO, capture_output=True, text=True).stdout
    assert out.split() == [rate_name(r) for r in rates]


# ----------------------------------------------------------------------------- relative paths
def test_relative_out_data_and_weights_resolve_against_the_caller(fake, tmp_path):
    caller = tmp_path / "here"
    caller.mkdir()
    (caller / "w.pt").write_text("x")
    proc, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "gce"], cwd=str(caller), OUT="rel",
                       DATA="mydata", CLIP_WEIGHTS="w.pt", SUMMARY="0")
    assert proc.returncode == 0, proc.stderr
    args = calls[0]
    assert args[args.index("--root") + 1] == str(caller / "mydata")
    assert args[args.index("MODEL.BACKBONE.NAME") + 1] == str(caller / "w.pt")
    assert out_dir(calls)[0].startswith(str(caller / "rel") + "/dtd/PTNL/w/")


# ----------------------------------------------------------------------------- folder names
def test_backbone_folder_is_the_weights_name_and_prompt_free_trainers_have_short_settings(fake, tmp_path):
    _, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "gce"], CLIP_WEIGHTS="pocket", SUMMARY="0")
    assert "/dtd/PTNL/pocket/sym-swap-0.5/gce/shots16_nctx16_cscFalse_ctpend/seed1" in out_dir(calls)[0]
    _, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "ce"], CLIP_WEIGHTS="/w/my-clip.pth",
                    TRAINER="LinearProbe", SUMMARY="0")
    run = out_dir(calls)[0]
    assert run.endswith("/dtd/LinearProbe/my-clip/sym-swap-0.5/ce/shots16/seed1")
    p = parse_run_path(run)
    assert p["trainer"] == "LinearProbe" and p["backbone"] == "my-clip" and p["num_shots"] == 16 and "n_ctx" not in p
    old = parse_run_path("/o/dtd/LinearProbe/rn50/sym-swap-0.5/ce/shots16_nctx16_cscFalse_ctpend/seed2")
    assert old["n_ctx"] == 16 and old["seed"] == 2 and old["noise_rate"] == 0.5


def test_prompt_free_list_matches_the_trainers():
    import trainers.ptnl  # noqa: F401  (registers the trainers)
    from ptnl.trainers.base import PTNLTrainerBase
    from ptnl import compat
    reg = compat.TRAINER_REGISTRY
    names = reg.registered_names() if hasattr(reg, "registered_names") else list(reg._obj_map)
    free = sorted(n for n in names if issubclass(reg.get(n), PTNLTrainerBase) and not reg.get(n).PROMPT_SETTINGS)
    out = subprocess.run(["bash", "-c", "source scripts/ptnl/lib.sh; echo $PTNL_PROMPT_FREE"], cwd=REPO,
                         capture_output=True, text=True).stdout
    assert sorted(out.split()) == free


# ----------------------------------------------------------------------------- grids: count, ETA, own table
@pytest.mark.parametrize("script,env,n", [
    ("scripts/ptnl/ablation.sh", {"CONFIGS": "ClassifierR PTNL", "RATES": "0.0 0.5", "LOSSES": "ce"}, 4),
    ("scripts/ptnl/ctx_length.sh", {"NCTXS": "2 4", "RATES": "0.0 0.5"}, 4),
])
def test_grids_count_runs_show_eta_and_table_only_their_runs(fake, tmp_path, script, env, n):
    other = tmp_path / "out/dtd/PTNL/rn50/sym-swap-0.25/ce/shots16_nctx16_cscFalse_ctpend/seed1"
    other.mkdir(parents=True)
    (other / "results.json").write_text('{"accuracy": 1.0}')  # another grid's run in the same OUT
    tag = osp.basename(script)[:-3]
    proc, calls = fake(script, ["dtd", "rn50"], **env)
    assert proc.returncode == 0, proc.stderr
    assert "[{}] dtd rn50: {} runs (0 done already)".format(tag, n) in proc.stdout
    assert "ETA after the first run" in proc.stdout and "[{}] run {}/{} [".format(tag, n, n) in proc.stdout
    assert re.search(r"\[{}\] run {}/{} \[#+\.*\] {}/{} done, elapsed \S+, ETA \d".format(tag, n, n, n - 1, n),
                     proc.stdout)
    (report,) = reports(calls)
    listed = report[report.index("--pivot") + 1:]
    assert sorted(listed) == sorted(out_dir(calls)) and str(other) not in listed
    again, calls = fake(script, ["dtd", "rn50"], **env)
    assert "{} runs ({} done already)".format(n, n) in again.stdout and "[{}] run ".format(tag) not in again.stdout
    assert again.stdout.count("Done already, skipping") == n  # train.py checked each one's settings
    _, calls = fake(script, ["dtd", "rn50"], ALL_RUNS="1", **env)
    (report,) = reports(calls)
    assert report[-1] == str(tmp_path / "out" / "dtd")


def test_sweep_table_only_its_runs(fake, tmp_path):
    other = tmp_path / "out/dtd/PTNL/rn50/sym-swap-0.25/ce/shots16_nctx16_cscFalse_ctpend/seed1"
    other.mkdir(parents=True)
    (other / "results.json").write_text('{"accuracy": 1.0}')
    proc, calls = fake("scripts/ptnl/sweep.sh", ["dtd", "rn50"], RATES="0.0 0.5", TRAINERS="PTNL", LOSSES="ce")
    assert proc.returncode == 0, proc.stderr
    assert "[sweep] dtd rn50: 2 runs (0 done already)" in proc.stdout
    (report,) = reports(calls)
    assert str(other) not in report and sorted(report[report.index("--plot") + 2:]) == sorted(out_dir(calls))


# ----------------------------------------------------------------------------- listing
def _finished(d, acc, seed=1):
    os.makedirs(d, exist_ok=True)
    json.dump({"accuracy": acc, "trainer": "PTNL", "seed": seed, "noise": {"type": "sym", "mode": "swap", "rate": 0.5}},
              open(osp.join(d, "results.json"), "w"))


def test_stray_log_at_the_top_hides_no_run(tmp_path, capsys):
    for i in range(3):
        _finished(str(tmp_path / "output/dtd/PTNL/rn50/sym-swap-0.5/ce/shots16_nctx16_cscFalse_ctpend/seed{}".format(i)),
                  40.0 + i, seed=i)
    (tmp_path / "output" / "log.txt").write_text("Loading trainer\nError: Config file \"x\" not found\n")
    assert report_main([str(tmp_path / "output")]) == 0
    out = capsys.readouterr().out
    assert "No finished runs" not in out and "41.00 ± 0.82" in out and "3 (0 1 2)" in out
    assert "{}: failed: Config file \"x\" not found".format(tmp_path / "output") in out


def test_failed_and_interrupted_runs_say_so(tmp_path, capsys):
    base = tmp_path / "dtd/PTNL/rn50/sym-swap-0.5/ce/shots16_nctx16_cscFalse_ctpend"
    _finished(str(base / "seed1"), 40.0)
    os.makedirs(base / "seed2")
    (base / "seed2" / "log.txt").write_text("epoch [1/10] batch [1/1]\nError: CUDA out of memory\n")
    os.makedirs(base / "seed3")
    (base / "seed3" / "log.txt").write_text("epoch [3/10] batch [1/1]\nInterrupted at epoch 3/10; re-run the same "
                                            "command to resume\n")
    os.makedirs(base / "seed4")
    (base / "seed4" / "log.txt").write_text("Error: old failure\n")
    (base / "seed4" / "log.txt-2026-01-01-00-00-00").write_text("epoch [2/10] batch [1/1]\n")  # retried, running
    assert report_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "seed2: failed: CUDA out of memory" in out
    assert "seed3: interrupted at epoch 3" in out
    assert re.search(r"seed4: no results.json .* running, interrupted or crashed; last epoch logged 2/10", out)


# ----------------------------------------------------------------------------- report polish
def test_ensemble_rows_tell_topk_from_random_with_two_decimals():
    from ptnl.report.ensemble import format_ensembles
    base = dict(dataset="dtd", trainer="UPL", backbone="RN50", loss="ce", num_shots=16, noise_type="sym",
                noise_mode="swap", noise_rate=0.0, seeds=[1, 2], accuracies=[45.0, 47.78], mean=46.39, std=1.39,
                ensemble=45.0)
    text = format_ensembles([dict(base, variant="topk-dataset", selection="topk"),
                             dict(base, variant="random-dataset", selection="random")])
    lines = text.splitlines()
    assert "variant" in lines[0] and "topk-dataset" in lines[2] and "random-dataset" in lines[3]
    assert "1:45.00 2:47.78" in lines[2] and "46.39 ± 1.39" in lines[2] and re.search(r" 45\.00$", lines[2])
    assert not re.search(r"(?<![\d.:])45(?![\d.])", text)


def test_upl_selection_message_names_short_classes():
    import numpy as np
    from ptnl.trainers.upl import selection_message
    msg = selection_message(183, 16, "topk", np.array([40, 5, 16, 6]), ["banded", "dotted", "lined", "woven"])
    assert msg.startswith("UPL: 183 pseudo-labelled images selected (16 per class, topk)")
    assert "not 4 x 16 = 64" in msg and "dotted (5), woven (6)" in msg and "banded" not in msg
    assert selection_message(64, 16, "random", np.array([16] * 4), list("abcd")).endswith("(16 per class, random)")


def test_cache_report_lists_each_entry(tmp_path):
    import torch
    from ptnl.io import cache
    root = str(tmp_path / "cache")
    dkey = cache.cache_key(kind="file_digest", path="/w/pocket.pt", size=1, mtime_ns=2)
    cache.save(dkey, {"sha256": "ab" * 32}, root=root)
    fkey = cache.cache_key(kind="image_features", weights="ab" * 32, dataset="DescribableTextures", split="test",
                           transform="T", images="x")
    cache.save(fkey, torch.zeros(100, 8), root=root)
    zkey = cache.cache_key(kind="zeroshot_logits", weights="cd" * 32, dataset="DescribableTextures",
                           templates="t", classnames=["a", "b"], transform="T")
    cache.save(zkey, {"paths": [], "logits": torch.zeros(0, 2)}, root=root)
    cache.save(cache.cache_key(other="legacy"), torch.zeros(1), root=root)
    old = cache.entry_path(fkey, root)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    lines = cache.report(root)
    assert lines[0].startswith("{}: 4 entries, ".format(root))
    feat = next(ln for ln in lines if "image features" in ln)
    assert "weights pocket.pt, dataset DescribableTextures, split test" in feat and " 2h old" in feat
    assert "kB" in feat
    assert any("zero-shot logits: weights cdcdcdcdcdcd, dataset DescribableTextures, 2 classes" in ln for ln in lines)
    assert any("sha256 of the weights file /w/pocket.pt" in ln for ln in lines)
    assert any("unknown content" in ln for ln in lines)
