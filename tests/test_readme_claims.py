"""Claims of the README and the docs/*.md pages that no other test checked, each against what a run
actually does (page and claim named in each test)."""
import json
import os
import os.path as osp
import re

import pytest
import torch

from conftest import run_py, train_args

# Loaded into the runs below with PTNL_PLUGINS: after every epoch, how many records epochs.json holds
# and which scalars the trainer wrote (write_scalar is what reaches TensorBoard when it is installed).
CLAIMS_PROBE = '''
import json, os, os.path as osp
from ptnl.trainers.base import PTNLTrainerBase

_after_epoch = PTNLTrainerBase.after_epoch


def write_scalar(self, tag, value, step=None):
    self._claims_scalars = getattr(self, "_claims_scalars", []) + [[tag, step]]


def after_epoch(self):
    _after_epoch(self)
    with open(osp.join(self.output_dir, "epochs.json")) as f:
        records = json.load(f)
    line = {"epoch": self.epoch + 1, "epochs_json": [r["epoch"] for r in records],
            "scalars": getattr(self, "_claims_scalars", [])}
    self._claims_scalars = []
    with open(os.environ["CLAIMS_PROBE"], "a") as f:
        f.write(json.dumps(line) + "\\n")


PTNLTrainerBase.write_scalar = write_scalar
PTNLTrainerBase.after_epoch = after_epoch
'''


def probe_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """One 3-epoch PTNL run with --seed 0, TEST.FINAL_MODEL best_val, KEEP_CHECKPOINTS 2 and --verbose,
    where importing scikit-learn fails (a poisoned ``sklearn`` package first on PYTHONPATH)."""
    tmp = tmp_path_factory.mktemp("claims")
    poison = tmp / "poison" / "sklearn"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('scikit-learn was imported by a training run')\n")
    (tmp / "claims_probe.py").write_text(CLAIMS_PROBE)
    out = str(tmp / "run")
    env = {"PYTHONPATH": str(tmp / "poison"), "PTNL_PLUGINS": str(tmp / "claims_probe.py"),
           "CLAIMS_PROBE": str(tmp / "probe.jsonl")}
    args = train_args(world["data"], world["clip"], out, seed=0, epochs=3,
                      extra=["TEST.FINAL_MODEL", "best_val", "TRAINER.PTNL.KEEP_CHECKPOINTS", "2"])
    args.insert(1, "--verbose")  # flags before the KEY VALUE pairs
    proc = run_py(args, env=env)
    return {"tmp": tmp, "out": out, "env": env, "args": args, "proc": proc}


def test_training_and_evaluation_never_import_scikit_learn(trained):
    """docs/speed.md: "training and evaluation never import scikit-learn" (the run above succeeds
    although importing it raises)."""
    res = json.load(open(osp.join(trained["out"], "results.json")))
    assert res["macro_f1"] is not None and len(res["epochs"]) == 3


def test_seed_0_seeds_the_run(trained):
    """docs/engines.md: "--seed 0 seeds the run (CoOp ignores it)": CoOp's train.py leaves SEED -1."""
    res = json.load(open(osp.join(trained["out"], "results.json")))
    noise = json.load(open(osp.join(trained["out"], "noise.json")))
    assert res["seed"] == 0 and res["config"]["SEED"] == 0 and noise["seed"] == 0


def test_keep_checkpoints_keeps_the_newest_n_and_best_val_keeps_model_best(trained):
    """docs/running.md: the newest TRAINER.PTNL.KEEP_CHECKPOINTS epochs (here 2 of 3), and
    model-best.pth.tar only with TEST.FINAL_MODEL best_val."""
    files = sorted(os.listdir(osp.join(trained["out"], "prompt_learner")))
    assert files == ["checkpoint", "model-best.pth.tar", "model.pth.tar-2", "model.pth.tar-3"], files


def test_verbose_prints_the_record_log_txt_always_has(trained, world, tmp_path):
    """docs/running.md: the terminal shows a compact header; --verbose adds the full record
    (arguments, config, environment) that log.txt always has."""
    verbose = trained["proc"].stdout
    log = open(osp.join(trained["out"], "log.txt")).read()
    for text in ("Collecting env info", "** System info **", "OPTIM:", "KEEP_CHECKPOINTS: 2"):
        assert text in verbose and text in log, text
    quiet = run_py(train_args(world["data"], world["clip"], str(tmp_path / "quiet"), epochs=1))
    assert "Collecting env info" not in quiet.stdout and "OPTIM:" not in quiet.stdout
    assert "Collecting env info" in open(str(tmp_path / "quiet" / "log.txt")).read()


def test_epochs_json_is_rewritten_every_epoch_and_diagnostics_are_scalars(trained):
    """docs/running.md: epochs.json "rewritten after every epoch"; docs/noise.md: the per-epoch
    diagnostics are "also scalars under diagnostics/" (written where a TensorBoard writer is open)."""
    lines = probe_lines(str(trained["tmp"] / "probe.jsonl"))
    assert [(ln["epoch"], ln["epochs_json"]) for ln in lines] == [(1, [1]), (2, [1, 2]), (3, [1, 2, 3])]
    for ln in lines:
        tags = {tag: step for tag, step in ln["scalars"] if tag.startswith("diagnostics/")}
        assert {"diagnostics/loss", "diagnostics/noisy_memorised", "diagnostics/noisy_true"} <= set(tags), tags
        assert set(tags.values()) == {ln["epoch"]}
    res = json.load(open(osp.join(trained["out"], "results.json")))
    assert json.load(open(osp.join(trained["out"], "epochs.json"))) == res["epochs"]


def test_eval_only_loads_model_best_under_best_val(trained, tmp_path):
    """docs/running.md: --eval-only without --load-epoch loads model-best.pth.tar where the run kept
    one (TEST.FINAL_MODEL best_val), and the log names the file loaded."""
    out = str(tmp_path / "eval")
    args = [a for a in trained["args"] if a != "--verbose"]
    args[args.index("--output-dir") + 1] = out
    proc = run_py(args[:1] + ["--eval-only", "--model-dir", trained["out"]] + args[1:])
    best = osp.join(trained["out"], "prompt_learner", "model-best.pth.tar")
    loaded = re.findall(r"Load (\S+) to prompt_learner \(epoch=\d+", proc.stdout)
    assert loaded == [best], proc.stdout[-2000:]
    assert "Load {} to prompt_learner".format(best) in open(osp.join(out, "log.txt")).read()
    res = json.load(open(osp.join(trained["out"], "results.json")))
    assert json.load(open(osp.join(out, "evaluation.json")))["accuracy"] == res["accuracy"]


def test_a_resumed_run_keeps_the_epochs_before_its_checkpoint(trained, tmp_path):
    """docs/running.md: "a resumed run keeps the epochs before its checkpoint" (epochs.json): the run
    is made unfinished at epoch 2 (no results.json, the newest checkpoint epoch 2's) and run again."""
    import shutil
    out = str(tmp_path / "resumed")
    shutil.copytree(trained["out"], out)
    before = json.load(open(osp.join(out, "epochs.json")))
    os.remove(osp.join(out, "results.json"))
    os.remove(osp.join(out, "prompt_learner", "model.pth.tar-3"))
    named = osp.join(out, "prompt_learner", "checkpoint")  # the file naming the newest checkpoint, as Dassl's
    text = open(named).read()
    assert "model.pth.tar-3" in text
    with open(named, "w") as f:
        f.write(text.replace("model.pth.tar-3", "model.pth.tar-2"))
    args = list(trained["args"])
    args[args.index("--output-dir") + 1] = out
    env = dict(trained["env"], CLAIMS_PROBE=str(tmp_path / "probe.jsonl"))
    run_py(args, env=env)
    lines = probe_lines(str(tmp_path / "probe.jsonl"))
    assert [(ln["epoch"], ln["epochs_json"]) for ln in lines] == [(3, [1, 2, 3])]  # only epoch 3 trained
    after = json.load(open(osp.join(out, "epochs.json")))
    assert after[:2] == before[:2] and after[2]["epoch"] == 3


def test_cpu_image_encoder_runs_at_most_32_images_at_once(world):
    """docs/speed.md: on a CPU the image encoder runs on at most 32 images at once whatever
    TEST.BATCH_SIZE is."""
    import glob
    from ptnl.clip.features import image_features
    paths = sorted(glob.glob(osp.join(world["data"], "dtd", "images", "*", "*")))[:70]
    assert len(paths) == 70
    sizes = []

    def encode(x):
        sizes.append(x.shape[0])
        return torch.ones(x.shape[0], 4)
    feats = image_features(encode, paths, lambda img: torch.zeros(3, 8, 8), torch.device("cpu"), batch_size=100)
    assert feats.shape == (70, 4)
    assert sum(sizes) == 70 and max(sizes) <= 32, sizes


def test_upl_templates_ensemble_is_clips_seven_plus_the_datasets():
    """docs/trainers.md: TRAINER.UPL.TEMPLATES ``ensemble`` is CLIP's 7 selected ImageNet templates
    (CLIP's prompt-engineering notebook) plus the dataset's own."""
    from ptnl.clip.templates import template_set
    clip_seven = ["itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                  "a {} in a video game.", "art of the {}.", "a photo of the small {}."]
    assert template_set("DescribableTextures", "dataset") == ["{} texture."]
    assert template_set("DescribableTextures", "ensemble") == clip_seven + ["{} texture."]


def test_upl_averages_the_backbones_probabilities(monkeypatch):
    """docs/trainers.md: TRAINER.UPL.BACKBONES "several CLIPs whose probabilities are averaged"
    (the softmax of each backbone's logits, then the mean; not the softmax of summed logits)."""
    import types

    import numpy as np

    from ptnl.trainers import upl
    logits = {"a.pt": torch.tensor([[4.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
              "b.pt": torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 9.0]])}
    seen = []

    def fake_load_clip(name, **_):
        return types.SimpleNamespace(name=name, visual=types.SimpleNamespace(input_resolution=32))

    def fake_logits(model, paths, classnames, templates, *a, **k):
        seen.append((model.name, templates))
        return logits[model.name]
    monkeypatch.setattr(upl, "load_clip", fake_load_clip)
    monkeypatch.setattr(upl, "zeroshot_logits", fake_logits)
    monkeypatch.setattr(upl.compat, "build_transform", lambda cfg, is_train: None)
    cfg = types.SimpleNamespace(
        DATASET=types.SimpleNamespace(NAME="DescribableTextures"), INPUT=types.SimpleNamespace(SIZE=(32, 32)),
        TRAINER=types.SimpleNamespace(UPL=types.SimpleNamespace(TEMPLATES="ensemble", BACKBONES=["a.pt", "b.pt"]),
                                      PTNL=types.SimpleNamespace(CACHE_VERIFY="stat")),
        MODEL=types.SimpleNamespace(BACKBONE=types.SimpleNamespace(NAME="a.pt")),
        DATALOADER=types.SimpleNamespace(TEST=types.SimpleNamespace(BATCH_SIZE=10), NUM_WORKERS=0))
    trainer = types.SimpleNamespace(cfg=cfg, device=torch.device("cpu"),
                                    dm=types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=list("xyz"))))
    trainer.pseudo_backbones = lambda: upl.UPL.pseudo_backbones(trainer)
    probs = upl.UPL.zero_shot_probs(trainer, ["i1", "i2"])
    expected = (torch.softmax(logits["a.pt"], 1) + torch.softmax(logits["b.pt"], 1)).numpy() / 2
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    assert [name for name, _ in seen] == ["a.pt", "b.pt"] and len(seen[0][1]) == 8  # the ensemble's templates


def test_zero_shot_pseudo_labels_are_cached(world, monkeypatch, tmp_path):
    """docs/trainers.md: "Pseudo-labels are cached": the zero-shot logits UPL labels with are read
    back from the cache (the image encoder is not run again)."""
    import glob

    from ptnl.clip.features import zeroshot_logits
    from ptnl.clip.weights import load_clip
    monkeypatch.setenv("PTNL_CACHE_DIR", str(tmp_path / "cache"))
    model = load_clip(world["clip"], device="cpu", prec="fp32")
    paths = sorted(glob.glob(osp.join(world["data"], "dtd", "images", "*", "*")))[:12]
    names = ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered"]
    from torchvision import transforms
    tfm = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor()])
    first = zeroshot_logits(model, paths, names, ["{} texture."], tfm, "DescribableTextures")
    monkeypatch.setattr(model, "encode_image", lambda x: pytest.fail("encoded again instead of reading the cache"))
    again = zeroshot_logits(model, paths, names, ["{} texture."], tfm, "DescribableTextures")
    assert first.shape == (12, 6) and torch.equal(first, again)
    # read back by image: another order and a subset get each image's own row
    some = list(reversed(paths[:8]))
    part = zeroshot_logits(model, some, names, ["{} texture."], tfm, "DescribableTextures")
    assert torch.equal(part, first[list(range(7, -1, -1))])
