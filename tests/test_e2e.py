"""The real scripts on generated data: main.sh, resume, eval-only, and bad input."""
import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, SMALL_OPTS, run_py, train_args

RESULT_KEYS = {"accuracy", "macro_f1", "per_class_accuracy", "trainer", "dataset", "backbone", "seed",
               "num_shots", "noise", "loss", "epochs", "engine", "config_digest", "wall_time_s"}


def final_accuracy(log_text):
    """The last '* accuracy: X%' after 'Finish training' (what CoOp's parse_test_res.py reads)."""
    after = log_text.split("Finish training", 1)[1]
    return re.findall(r"\* accuracy: ([\d.]+)%", after)[-1]


def run_main(world, out, rate="0.5", loss="gce", seeds="1 2", extra=()):
    env = dict(os.environ, DATA=world["data"], CLIP_WEIGHTS=world["clip"], SEEDS=seeds, SHOTS="4", OUT=out,
               PYTHON=sys.executable)
    cmd = ["bash", "scripts/ptnl/main.sh", "dtd", "rn50", rate, loss, "OPTIM.MAX_EPOCH", "2"] + SMALL_OPTS + list(extra)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_main_sh_end_to_end(world, tmp_path):
    out = str(tmp_path / "output")
    proc = run_main(world, out)
    base = osp.join(out, "dtd", "PTNL", "clip-vit", "sym-swap-0.5", "gce", "shots4_nctx16_cscFalse_ctpend")
    for seed in (1, 2):
        run = osp.join(base, "seed{}".format(seed))
        res = json.load(open(osp.join(run, "results.json")))
        assert RESULT_KEYS <= set(res)
        assert res["seed"] == seed and res["dataset"] == "DescribableTextures" and res["loss"] == "gce"
        assert res["noise"]["type"] == "sym" and res["noise"]["mode"] == "swap" and res["noise"]["rate"] == 0.5
        assert res["noise"]["realised_rate"] == 0.5
        assert res["engine"]["name"] in ("builtin", "dassl")
        assert [e["epoch"] for e in res["epochs"]] == [1, 2]
        assert {"loss", "lr", "clean_acc", "noisy_memorised", "noisy_true"} <= set(res["epochs"][0])
        assert res["epochs"][0]["lr"] == 1e-5 and res["epochs"][1]["lr"] == 0.002
        assert len(res["per_class_accuracy"]) == 6
        log = open(osp.join(run, "log.txt")).read()
        assert log.startswith("PTNL engine: ")
        assert final_accuracy(log) == "{:.1f}".format(res["accuracy"])
        noise = json.load(open(osp.join(run, "noise.json")))
        assert {"type", "mode", "rate", "realised_rate", "seed", "transition", "samples"} <= set(noise)
        assert len(noise["samples"]) == 24
        assert os.listdir(osp.join(run, "prompt_learner")) == ["checkpoint", "model.pth.tar-2"] or \
            sorted(os.listdir(osp.join(run, "prompt_learner"))) == ["checkpoint", "model.pth.tar-2"]
    assert "±" in proc.stdout and "2 (1 2)" in proc.stdout
    again = run_main(world, out)
    assert again.stdout.count("Done already, skipping") == 2


def test_interrupted_run_resumes(world, tmp_path):
    out = str(tmp_path / "run")
    args = train_args(world["data"], world["clip"], out, epochs=40, rate=0.25)
    proc = subprocess.Popen([sys.executable] + args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = osp.join(out, "prompt_learner", "checkpoint")
    deadline = time.time() + 300
    while time.time() < deadline:
        if osp.isfile(marker) and open(marker).read().strip() not in ("", "model.pth.tar-1"):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not osp.isfile(osp.join(out, "results.json"))
    done_epoch = int(open(marker).read().strip().split("-")[1])
    assert 2 <= done_epoch < 40
    run_py(args)
    logs = [f for f in os.listdir(out) if f.startswith("log.txt-")]
    resumed = open(osp.join(out, logs[0])).read()
    assert "Found checkpoint at {} (will resume training)".format(out) in resumed
    assert "Previous epoch: {}".format(done_epoch) in resumed
    assert "epoch [{}/40]".format(done_epoch + 1) in resumed and "epoch [1/40]" not in resumed
    res = json.load(open(osp.join(out, "results.json")))
    assert [e["epoch"] for e in res["epochs"]] == list(range(1, 41))
    import math
    for e in res["epochs"][1:]:  # the lr keeps following the schedule after the resume
        assert e["lr"] == pytest.approx(0.002 * (1 + math.cos(math.pi * (e["epoch"] - 2) / 40)) / 2, rel=1e-9)


def test_eval_only_reproduces_final_accuracy(world, tmp_path):
    out = str(tmp_path / "run")
    run_py(train_args(world["data"], world["clip"], out, epochs=3, seed=3, loss="ce"))
    trained = final_accuracy(open(osp.join(out, "log.txt")).read())
    ev = str(tmp_path / "eval")
    args = train_args(world["data"], world["clip"], ev, epochs=3, seed=3, loss="ce")
    run_py(args[:1] + ["--eval-only", "--model-dir", out, "--load-epoch", "3"] + args[1:])
    log = open(osp.join(ev, "log.txt")).read()
    assert re.findall(r"\* accuracy: ([\d.]+)%", log)[-1] == trained
    assert not osp.exists(osp.join(ev, "results.json"))


def test_eval_only_refuses_a_checkpoint_without_the_trained_context(world, tmp_path):
    """A checkpoint that lacks a trainable tensor (another trainer's or prompt shape's, here one whose
    ``ctx`` was removed, as a Dassl-written file without PTNL's digest) is a one-line error naming the
    file and the tensor; a non-strict load used to leave the context at its random initial value and
    score that silently."""
    import torch
    from ptnl.engine.utils import DIGEST_KEY, load_checkpoint
    out = str(tmp_path / "run")
    run_py(train_args(world["data"], world["clip"], out, epochs=1, seed=3, loss="ce"))
    path = osp.join(out, "prompt_learner", "model.pth.tar-1")
    ckpt = load_checkpoint(path)
    ckpt.pop(DIGEST_KEY, None)
    del ckpt["state_dict"]["ctx"]
    torch.save(ckpt, path)
    ev = str(tmp_path / "eval")
    args = train_args(world["data"], world["clip"], ev, epochs=1, seed=3, loss="ce")
    proc = run_py(args[:1] + ["--eval-only", "--model-dir", out, "--load-epoch", "1"] + args[1:], check=False)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and path in errors[0] and "ctx" in errors[0], proc.stderr[-2000:]
    assert "accuracy" not in proc.stdout.split("Load ")[-1]


def bad_run(world, tmp_path, extra=(), env=None, root=None, trainer=None, clip=None):
    out = str(tmp_path / "bad")
    args = train_args(root or world["data"], clip or world["clip"], out, epochs=1, extra=extra)
    if trainer:
        args[args.index("--trainer") + 1] = trainer
    proc = run_py(args, env=env, check=False)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not osp.exists(osp.join(out, "results.json"))
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def test_error_missing_dataset_folder(world, tmp_path):
    msg = bad_run(world, tmp_path, root=str(tmp_path / "nodata"))
    assert str(tmp_path / "nodata" / "dtd") in msg and "split_zhou_DescribableTextures.json" in msg


def test_error_missing_split_file(world, tmp_path):
    os.makedirs(tmp_path / "d" / "dtd")
    msg = bad_run(world, tmp_path, root=str(tmp_path / "d"))
    assert "split_zhou_DescribableTextures.json" in msg and "not found" in msg


def test_error_unknown_dataset(world, tmp_path):
    msg = bad_run(world, tmp_path, extra=["DATASET.NAME", "DescribableTexture"])
    assert "DescribableTextures" in msg and "[DescribableTexture]" in msg


def test_error_unknown_trainer(world, tmp_path):
    msg = bad_run(world, tmp_path, trainer="PTNX")
    assert "'PTNL'" in msg and "[PTNX]" in msg


def test_error_unknown_backbone(world, tmp_path):
    msg = bad_run(world, tmp_path, clip="RN51")
    assert "RN51" in msg and "RN50" in msg and "ViT-B/32" in msg


def test_error_noise_rate_out_of_range(world, tmp_path):
    msg = bad_run(world, tmp_path, extra=["DATASET.NOISE.RATE", "1.0"])
    assert "[0, 1)" in msg and "DATASET.NOISE.RATE" in msg


def test_error_unknown_loss(world, tmp_path):
    msg = bad_run(world, tmp_path, extra=["TRAINER.PTNL.LOSS", "focal"])
    assert "focal" in msg and "gce" in msg


def test_error_unknown_config_key(world, tmp_path):
    msg = bad_run(world, tmp_path, extra=["TRAINER.PTNL.LOSSES", "ce"])
    assert "TRAINER.PTNL.LOSSES" in msg


def test_error_unreadable_image(world, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(world["data"], root)
    for sub in os.listdir(root / "dtd" / "images"):
        for f in os.listdir(root / "dtd" / "images" / sub):
            (root / "dtd" / "images" / sub / f).write_bytes(b"not an image")
    msg = bad_run(world, tmp_path, root=str(root))
    assert str(root / "dtd" / "images") in msg


def test_error_clip_weights_missing_offline(world, tmp_path):
    cache = tmp_path / "clipcache"
    msg = bad_run(world, tmp_path, clip="RN50", env={"PTNL_CLIP_DIR": str(cache), "PTNL_OFFLINE": "1"})
    assert str(cache / "RN50.pt") in msg and "RN50" in msg and "Download" in msg


@pytest.mark.skipif(not os.environ.get("PTNL_DASSL_PYTHON"),
                    reason="set PTNL_DASSL_PYTHON to a python that has real Dassl installed")
def test_same_run_under_real_dassl_and_builtin(tmp_path):
    """Fresh runs under both engines: same few-shot set, same noisy labels, same accuracy."""
    from ptnl.data.generated import make_clip, make_dtd
    clip = make_clip(str(tmp_path / "clip.pt"))
    results = {}
    for engine, python in (("builtin", sys.executable), ("dassl", os.environ["PTNL_DASSL_PYTHON"])):
        data = str(tmp_path / engine / "data")
        make_dtd(data, num_classes=6, per_class=40, size=36)
        out = str(tmp_path / engine / "out")
        args = train_args(data, clip, out, epochs=3, rate=0.5, loss="gce")
        env = dict(os.environ, PTNL_ENGINE=engine, OUTDATED_IGNORE="1")
        proc = subprocess.run([python] + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        res = json.load(open(osp.join(out, "results.json")))
        noise = json.load(open(osp.join(out, "noise.json")))
        assert res["engine"]["name"] == engine
        samples = [(osp.relpath(s["impath"], data), s["true_label"], s["label"]) for s in noise["samples"]]
        results[engine] = (samples, res["accuracy"], [e["loss"] for e in res["epochs"]])
    assert results["builtin"][0] == results["dassl"][0]
    assert results["builtin"][1] == results["dassl"][1]
    assert results["builtin"][2] == pytest.approx(results["dassl"][2], rel=1e-6)


def run_script(script, args, world, out, **env):
    full = dict(os.environ, DATA=world["data"], CLIP_WEIGHTS=world["clip"], SEEDS="1", SHOTS="4", OUT=out,
                PYTHON=sys.executable, **env)
    cmd = ["bash", script] + args + ["OPTIM.MAX_EPOCH", "1"] + SMALL_OPTS
    proc = subprocess.run(cmd, cwd=REPO, env=full, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_ablation_and_ctx_length_scripts(world, tmp_path):
    out = str(tmp_path / "out")
    table = run_script("scripts/ptnl/ablation.sh", ["dtd", "rn50"], world, out,
                       CONFIGS="ClassifierR CLSTuning", RATES="0.0 0.5", LOSSES="gce")
    assert "rate 0.0" in table and "rate 0.5" in table
    assert re.search(r"ClassifierR .* gce .*\(n=1\) .*\(n=1\)", table)
    assert re.search(r"CLSTuning .* gce .*\(n=1\) .*\(n=1\)", table)
    for trainer, setting in (("ClassifierR", "shots4"), ("CLSTuning", "shots4_nctx16_cscFalse_ctpend")):
        accuracies = []
        for rate in ("0.0", "0.5"):
            res = json.load(open(osp.join(out, "dtd", trainer, "clip-vit", "sym-swap-" + rate, "gce",
                                          setting, "seed1", "results.json")))
            # the run the folder names: trainer, rate, loss, shots, seed, and the script's one epoch
            assert (res["trainer"], res["noise"]["rate"], res["loss"], res["num_shots"], res["seed"]) == \
                (trainer, float(rate), "gce", 4, 1), res
            assert len(res["epochs"]) == 1
            accuracies.append("{:.2f}".format(res["accuracy"]))
        # the table's cells are these runs' accuracies (one seed each)
        row = next(ln for ln in table.splitlines()
                   if ln.startswith("DescribableTextures") and re.search(r"\b{} .* gce ".format(trainer), ln))
        assert re.findall(r"(\d+\.\d+) \(n=1\)", row) == accuracies, (row, accuracies)
    # one epoch on random weights often gives the same accuracy at every rate, which would hide a
    # table that puts a run under the wrong rate: give each run its own accuracy and read it back
    marks = {}
    for i, (trainer, setting) in enumerate((("ClassifierR", "shots4"), ("CLSTuning", "shots4_nctx16_cscFalse_ctpend"))):
        for j, rate in enumerate(("0.0", "0.5")):
            path = osp.join(out, "dtd", trainer, "clip-vit", "sym-swap-" + rate, "gce", setting, "seed1", "results.json")
            res = json.load(open(path))
            res["accuracy"] = marks.setdefault((trainer, rate), 10.0 + 20 * i + 10 * j + 0.25)
            json.dump(res, open(path, "w"))
    pivot = run_py(["-m", "ptnl.report", "--pivot", osp.join(out, "dtd")]).stdout
    for trainer in ("ClassifierR", "CLSTuning"):
        row = next(ln for ln in pivot.splitlines() if re.search(r"\b{} .* gce ".format(trainer), ln))
        assert re.findall(r"(\d+\.\d+) \(n=1\)", row) == \
            ["{:.2f}".format(marks[trainer, rate]) for rate in ("0.0", "0.5")], (row, marks)
    table = run_script("scripts/ptnl/ctx_length.sh", ["dtd", "rn50"], world, out, NCTXS="0 2", RATES="0.0 0.5")
    rows = [ln for ln in table.splitlines() if ln.startswith("DescribableTextures  PTNL")]
    assert len(rows) == 2 and re.search(r"\b0 +\d", rows[0]) and re.search(r"\b2 +\d", rows[1])
    again = run_script("scripts/ptnl/ctx_length.sh", ["dtd", "rn50"], world, out, NCTXS="0 2", RATES="0.0 0.5")
    assert again.count("Done already") == 4


DATASET_NAMES = {"imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
                 "stanford_cars": "StanfordCars", "oxford_flowers": "OxfordFlowers", "food101": "Food101",
                 "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DescribableTextures",
                 "eurosat": "EuroSAT", "ucf101": "UCF101"}


def test_main_sh_resolves_every_dataset_key(tmp_path):
    noise = ("confusion", "flip")
    env = dict(os.environ, DATA=str(tmp_path), SEEDS="1", OUT=str(tmp_path / "out"), PYTHON=sys.executable,
               DRY_RUN="1", VERBOSE="1", NOISE_TYPE=noise[0], NOISE_MODE=noise[1])
    import datasets  # noqa: F401  (registers every dataset)
    from ptnl import compat
    for name in DATASET_NAMES.values():  # dry runs check that the dataset folder exists (nothing is read)
        os.makedirs(tmp_path / compat.DATASET_REGISTRY.get(name).dataset_dir, exist_ok=True)
    for key, name in DATASET_NAMES.items():
        proc = subprocess.run(["bash", "scripts/ptnl/main.sh", key, "rn50", "0.5", "gce"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert 'NAME: {}'.format(name) in out and "RATE: 0.5" in out and "LOSS: gce" in out, key
        assert "TYPE: {}".format(noise[0]) in out and "MODE: {}".format(noise[1]) in out
        assert "/{}/PTNL/rn50/{}-{}-0.5/gce/".format(key, *noise) in out
    assert not (tmp_path / "out").exists()
