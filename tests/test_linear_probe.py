"""LinearProbe follows CoOp's lpclip by default: raw image features, C searched on the few-shot
val split (a 7-point grid, then 8 rounds of binary search in log10); the old protocol
(L2-normalised features, fixed C) and a noisy val split stay available."""
import json
import os.path as osp

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import SMALL_OPTS
from ptnl import compat
from ptnl.config import extend_cfg
from ptnl.noise import noisy_count
from ptnl.trainers.baselines import coop_search_c

import datasets  # noqa: F401
import trainers.ptnl  # noqa: F401


def lpclip_reference(train_x, train_y, val_x, val_y):
    """CoOp's lpclip/linear_probe.py search, transcribed step by step (its variable names)."""
    def fit_and_score(c_weight):
        clf = LogisticRegression(solver="lbfgs", max_iter=1000, C=c_weight).fit(train_x, train_y)
        return sum(clf.predict(val_x) == val_y) / len(val_y)
    search_list = [1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6]
    acc_list = [fit_and_score(c) for c in search_list]
    c_peak = search_list[np.argmax(acc_list)]
    c_left, c_right = 1e-1 * c_peak, 1e1 * c_peak
    c_final = None
    for _step in range(8):
        acc_left, acc_right = fit_and_score(c_left), fit_and_score(c_right)
        if acc_left < acc_right:
            c_final = c_right
            c_left = 0.5 * (np.log10(c_right) + np.log10(c_left))
            c_right = np.log10(c_right)
        else:
            c_final = c_left
            c_right = 0.5 * (np.log10(c_right) + np.log10(c_left))
            c_left = np.log10(c_left)
        c_left, c_right = np.power(10, c_left), np.power(10, c_right)
    return c_final


@pytest.mark.parametrize("seed", (0, 1, 2))
def test_search_chooses_coops_c(seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 16))
    y, yv = np.repeat(np.arange(5), 8), np.repeat(np.arange(5), 4)
    x = centres[y] + rng.normal(scale=2.0, size=(len(y), 16))  # overlapping classes: C matters
    xv = centres[yv] + rng.normal(scale=2.0, size=(len(yv), 16))
    c, tried = coop_search_c(x, y, xv, yv)
    assert c == pytest.approx(lpclip_reference(x, y, xv, yv), rel=1e-12)
    assert len(tried) == 7 + 2 * 8
    assert len({a for _, a in tried}) > 1  # the search had something to choose


def build(world, out, opts=()):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file("configs/trainers/PTNL/rn50.yaml")
    cfg.merge_from_list(["DATASET.ROOT", world["data"], "DATASET.NAME", "DescribableTextures",
                         "DATASET.NUM_SHOTS", 8, "SEED", 1, "TRAINER.NAME", "LinearProbe",
                         "MODEL.BACKBONE.NAME", world["clip"], "OUTPUT_DIR", str(out),
                         "DATASET.NOISE.RATE", 0.5] + SMALL_OPTS + list(opts))
    cfg.freeze()
    compat.set_random_seed(1)
    return compat.build_trainer(cfg)


def test_trainer_uses_raw_features_and_coops_search(world, tmp_path):
    trainer = build(world, tmp_path / "coop")
    trainer.train()
    rec = json.load(open(osp.join(trainer.output_dir, "results.json")))["linear_probe"]
    assert rec["protocol"] == "coop" and not trainer.model.head.normalize
    x = trainer.cached_features("train", trainer.train_items).numpy()
    y = np.array([d.label for d in trainer.train_items])
    val = trainer.dm.dataset.val
    xv = trainer.cached_features("val", val).numpy()
    yv = np.array([d.label for d in val])  # clean val labels by default
    assert rec["C"] == pytest.approx(lpclip_reference(x, y, xv, yv), rel=1e-12)
    assert rec["val_noisy"] == 0 and len(rec["search"]) == 23


def test_fixed_protocol_and_noisy_val(world, tmp_path):
    fixed = build(world, tmp_path / "fixed", ["TRAINER.LINEAR_PROBE.PROTOCOL", "fixed"])
    fixed.train()
    assert fixed.chosen_c == 1e3 and fixed.model.head.normalize
    noisy = build(world, tmp_path / "noisy", ["TRAINER.LINEAR_PROBE.VAL_NOISE", True])
    noisy.train()
    assert noisy.val_noisy == noisy_count(0.5, len(noisy.dm.dataset.val))
    with pytest.raises(ValueError, match="TRAINER.LINEAR_PROBE.PROTOCOL must be one of"):
        build(world, tmp_path / "bad", ["TRAINER.LINEAR_PROBE.PROTOCOL", "lpclip"])
