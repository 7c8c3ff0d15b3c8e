"""Unsupervised prompt tuning: selection invariants, no ground truth in training, seed ensembles."""
import json
import os
import os.path as osp
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, SMALL_OPTS
from ptnl import compat
from ptnl.config import extend_cfg
from ptnl.pseudo import pseudo_label_report, pseudo_labels, select_per_class

import datasets  # noqa: F401
import trainers.ptnl  # noqa: F401


def probs_fixture(n=200, c=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c)) * 3
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    return p


def test_pseudo_labels_are_argmax_with_confidence():
    p = probs_fixture()
    labels, conf = pseudo_labels(p)
    assert (labels == p.argmax(1)).all() and np.allclose(conf, p.max(1))


@pytest.mark.parametrize("k", [1, 4, 16, 100])
def test_selection_at_most_k_per_class_and_topk_is_most_confident(k):
    labels, conf = pseudo_labels(probs_fixture())
    for mode in ("topk", "random"):
        idx = select_per_class(labels, conf, k, mode, seed=3)
        assert len(set(idx.tolist())) == len(idx)
        counts = np.bincount(labels[idx], minlength=5)
        assert (counts == np.minimum(k, np.bincount(labels, minlength=5))).all()
    idx = select_per_class(labels, conf, k, "topk")
    for c in range(5):
        chosen = idx[labels[idx] == c]
        rest = np.setdiff1d(np.flatnonzero(labels == c), chosen)
        if len(rest):
            assert conf[chosen].min() >= conf[rest].max()


def test_random_selection_is_deterministic_per_seed_and_differs_across_seeds():
    labels, conf = pseudo_labels(probs_fixture())
    a = select_per_class(labels, conf, 4, "random", seed=1)
    random.seed(99)
    np.random.seed(99)
    assert (select_per_class(labels, conf, 4, "random", seed=1) == a).all()
    assert not (select_per_class(labels, conf, 4, "random", seed=2) == a).all()
    with pytest.raises(ValueError, match="SELECTION"):
        select_per_class(labels, conf, 4, "best")


def test_pseudo_label_report_counts():
    true = np.array([0, 0, 1, 1, 2, 2])
    pseudo = np.array([0, 1, 1, 1, 1, 0])
    rep = pseudo_label_report(true, pseudo, [0, 1, 2], 4, 2)
    assert rep["pseudo_label_accuracy"] == pytest.approx(50.0)
    assert rep["selection_accuracy"] == pytest.approx(200 / 3)
    assert rep["per_class_selected"] == [1, 2, 0, 0]
    assert rep["classes_below_k"] == [0] and rep["classes_without_pseudo_labels"] == [2, 3]


def upl_trainer(data, clip, out, seed=1, selection="random", shots=4):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file("configs/trainers/UPL/rn50.yaml")
    cfg.merge_from_list(["DATASET.ROOT", data, "DATASET.NAME", "DescribableTextures", "DATASET.NUM_SHOTS", shots,
                         "SEED", seed, "TRAINER.NAME", "UPL", "MODEL.BACKBONE.NAME", clip, "OUTPUT_DIR", out,
                         "TRAINER.UPL.SELECTION", selection, "OPTIM.MAX_EPOCH", 2] + SMALL_OPTS)
    cfg.freeze()
    compat.set_random_seed(seed)
    return compat.build_trainer(cfg)


def test_upl_without_k_takes_upls_16_per_class(world, tmp_path, monkeypatch):
    """No DATASET.NUM_SHOTS and no TRAINER.UPL.NUM_PER_CLASS: UPL's release default, 16 per class
    (it used to stop with "needs K > 0")."""
    from ptnl.trainers.upl import upl_k
    monkeypatch.setenv("PTNL_CACHE_DIR", str(tmp_path / "cache"))
    trainer = upl_trainer(world["data"], world["clip"], str(tmp_path / "k"), shots=-1)
    assert upl_k(trainer.cfg) == 16
    counts = np.bincount([d.label for d in trainer.train_items])
    assert counts.max() == 16  # the small random CLIP puts most images in one pseudo-class


def train_and_summarise(trainer):
    trainer.train()
    res = json.load(open(osp.join(trainer.output_dir, "results.json")))
    picks = [(osp.relpath(d.impath, trainer.dm.dataset.dataset_dir), d.label) for d in trainer.train_items]
    return picks, [e["loss"] for e in res["epochs"]], trainer.model.prompt_learner.ctx.detach().clone(), res


def test_ground_truth_labels_do_not_reach_training(world, fresh_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_CACHE_DIR", str(tmp_path / "cache"))
    ref = train_and_summarise(upl_trainer(fresh_data, world["clip"], str(tmp_path / "a")))
    # permute the ground-truth labels of the training split (label and class name move together)
    split_path = osp.join(fresh_data, "dtd", "split_zhou_DescribableTextures.json")
    split = json.load(open(split_path))
    rng = np.random.default_rng(0)
    pairs = [(y, c) for _, y, c in split["train"]]
    perm = rng.permutation(len(pairs))
    split["train"] = [[p, *pairs[j]] for (p, _, _), j in zip(split["train"], perm)]
    json.dump(split, open(split_path, "w"))
    for f in os.listdir(osp.join(fresh_data, "dtd", "split_fewshot")):
        os.remove(osp.join(fresh_data, "dtd", "split_fewshot", f))
    permuted = train_and_summarise(upl_trainer(fresh_data, world["clip"], str(tmp_path / "b")))
    assert permuted[0] == ref[0]
    assert permuted[1] == ref[1]
    assert torch.equal(permuted[2], ref[2])
    assert permuted[3]["accuracy"] == ref[3]["accuracy"]
    assert permuted[3]["upl"]["pseudo_label_accuracy"] != ref[3]["upl"]["pseudo_label_accuracy"]

    # permuting the pseudo-labels does change training
    import ptnl.trainers.upl as upl_module
    real = upl_module.pseudo_labels

    def shuffled(probs):
        labels, conf = real(probs)
        return (labels + 1) % probs.shape[1], conf
    monkeypatch.setattr(upl_module, "pseudo_labels", shuffled)
    other = train_and_summarise(upl_trainer(fresh_data, world["clip"], str(tmp_path / "c")))
    assert other[0] != ref[0]
    assert not torch.equal(other[2], ref[2])


def fake_run(folder, seed, logits, labels, paths):
    os.makedirs(folder)
    acc = 100.0 * float((logits.argmax(1) == labels).double().mean())
    json.dump({"accuracy": acc, "dataset": "D", "trainer": "UPL", "backbone": "b", "seed": seed, "num_shots": 4,
               "noise": {"type": "sym", "mode": "swap", "rate": 0.0}, "loss": "ce", "prompt": {"n_ctx": 4}},
              open(osp.join(folder, "results.json"), "w"))
    torch.save({"logits": logits, "labels": labels, "impaths": paths}, osp.join(folder, "test_logits.pt"))
    return acc


def test_ensemble_accuracy_equals_direct_average(tmp_path):
    from ptnl.report.ensemble import ensembles
    torch.manual_seed(0)
    labels = torch.randint(0, 7, (50,))
    paths = ["img{}.jpg".format(i) for i in range(50)]
    runs = [torch.randn(50, 7) + 1.5 * torch.nn.functional.one_hot(labels, 7) for _ in range(4)]
    accs = []
    for s, lg in enumerate(runs, start=1):
        perm = torch.randperm(50) if s == 3 else torch.arange(50)  # one run stored in another order
        accs.append(fake_run(str(tmp_path / "seed{}".format(s)), s, lg[perm], labels[perm], [paths[i] for i in perm]))
    direct = 100.0 * float((torch.stack(runs).mean(0).argmax(1) == labels).double().mean())
    (row,) = ensembles([str(tmp_path)])
    assert row["ensemble"] == pytest.approx(direct)
    assert row["seeds"] == [1, 2, 3, 4] and row["mean"] == pytest.approx(np.mean(accs))
    assert row["std"] == pytest.approx(np.std(accs))
    # python -m ptnl.report shows it beside mean ± std, in a column that says which is which
    from ptnl.report.cli import main
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main([str(tmp_path)])
    out = buf.getvalue()
    header = next(ln for ln in out.splitlines() if "accuracy (mean ± std)" in ln)
    assert "seed ensemble" in header and "{:.2f}".format(direct) in out
    assert "seed ensemble: accuracy of the seeds' test logits averaged" in out


def test_upl_script_end_to_end(world, tmp_path):
    env = dict(os.environ, DATA=world["data"], CLIP_WEIGHTS=world["clip"], SEEDS="1 2", SHOTS="4",
               OUT=str(tmp_path / "out"), PYTHON=sys.executable, PTNL_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run(["bash", "scripts/upl/main.sh", "dtd", "rn50", "random", "gce", "OPTIM.MAX_EPOCH", "1"]
                          + SMALL_OPTS, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "ensemble" in out and "1:" in out and "2:" in out and "Zero-shot CLIP (reference)" in out
    assert "ZeroshotCLIP" in out
    res = json.load(open(osp.join(tmp_path, "out", "dtd", "UPL", "clip-vit", "sym-swap-0.0", "gce", "random-dataset",
                                  "shots4_nctx16_cscFalse_ctpend", "seed1", "results.json")))
    assert res["upl"]["selection"] == "random" and res["upl"]["num_per_class"] == 4
