"""Base-to-new (CoCoOp's protocol): ``DATASET.SUBSAMPLE_CLASSES`` splits and relabels as CoCoOp's
``OxfordPets.subsample_classes`` (the first ceil(n/2) sorted labels of the training list are base),
label noise stays among the kept classes, ``scripts/ptnl/base2new.sh`` trains on base, evaluates on
new and its table shows base, new and H."""
import json
import os
import os.path as osp
import subprocess

import pytest

from conftest import REPO

from ptnl import compat
from ptnl.config import extend_cfg
from ptnl.data.subsample import subsample_classes, subsample_labels
from ptnl.errors import ConfigError
from ptnl.report.protocols import average_row, base2new_rows, collect, format_base2new, harmonic_mean

import datasets  # noqa: F401  (registers the datasets)


class Item:
    """A Datum stand-in (the fields Dassl's Datum keeps)."""

    def __init__(self, impath, label, classname):
        self._impath, self._label, self._classname, self._domain = impath, label, classname, 0

    impath = property(lambda self: self._impath)
    label = property(lambda self: self._label)
    classname = property(lambda self: self._classname)


def items(labels, tag):
    return [Item("{}/{}_{}.jpg".format(tag, y, i), y, "class{}".format(y)) for i, y in enumerate(labels)]


def test_split_and_relabel_are_cocoops():
    """Classes come from the first list only, sorted; odd counts give base the extra class; every list is
    filtered and relabelled by rank; class names stay."""
    train = items([9, 2, 5, 11, 7, 2], "train")  # 5 classes: 2 5 7 9 11 -> base 2 5 7, new 9 11
    test = items([11, 2, 3, 7, 9, 5], "test")  # label 3 is in no training list: dropped by both halves
    base_train, base_test = subsample_classes("base", train, test)
    assert [(d.impath, d.label, d.classname) for d in base_train] == [
        ("train/2_1.jpg", 0, "class2"), ("train/5_2.jpg", 1, "class5"), ("train/7_4.jpg", 2, "class7"),
        ("train/2_5.jpg", 0, "class2")]
    assert [(d.label, d.classname) for d in base_test] == [(0, "class2"), (2, "class7"), (1, "class5")]
    new_train, new_test = subsample_classes("new", train, test)
    assert [(d.label, d.classname) for d in new_train] == [(0, "class9"), (1, "class11")]
    assert [(d.label, d.classname) for d in new_test] == [(1, "class11"), (0, "class9")]
    assert subsample_classes("all", train, test) == (train, test)
    assert subsample_labels(range(6), "base") == [0, 1, 2] and subsample_labels(range(7), "base") == [0, 1, 2, 3]
    assert subsample_classes("base", train, None)[1] is None  # a dataset without val
    assert train[0].label == 9  # the inputs are not changed
    with pytest.raises(ConfigError, match="SUBSAMPLE_CLASSES must be one of"):
        subsample_classes("half", train)


def dtd(root, subsample, rate=0.0, shots=4):
    cfg = extend_cfg(compat.get_cfg_default())
    cfg.DATASET.ROOT, cfg.DATASET.NUM_SHOTS, cfg.SEED = root, shots, 1
    cfg.DATASET.NAME, cfg.DATASET.SUBSAMPLE_CLASSES, cfg.DATASET.NOISE.RATE = "DescribableTextures", subsample, rate
    compat.set_random_seed(1)
    return compat.DATASET_REGISTRY.get("DescribableTextures")(cfg)


def test_dataset_keeps_one_half_and_noise_stays_among_base_classes(fresh_data):
    full = dtd(fresh_data, "all")
    base, new = dtd(fresh_data, "base"), dtd(fresh_data, "new")
    names = full.classnames  # 6 generated classes
    assert base.classnames == names[:3] and base.num_classes == 3
    assert new.classnames == names[3:] and new.num_classes == 3
    for ds, offset in ((base, 0), (new, 3)):
        for split in (ds.train_x, ds.val, ds.test):
            assert {d.label for d in split} == {0, 1, 2}
            assert all(d.classname == names[d.label + offset] for d in split)
    # the few-shot picks of the base classes are those of the full run (one cache, as CoCoOp)
    assert [d.impath for d in base.train_x] == [d.impath for d in full.train_x if d.label < 3]
    noisy = dtd(fresh_data, "base", rate=0.5)
    record = noisy.noise_record
    assert record["num_noisy"] == 6 and len(record["transition"]) == 3  # 2 of 4 shots x 3 classes
    base_folders = {osp.join("images", n) for n in names[:3]}
    assert all(any(f in d.impath for f in base_folders) for d in noisy.train_x)  # swapped in from base only
    assert {d.label for d in noisy.train_x} == {0, 1, 2}


def test_harmonic_mean_and_average_row_are_cocoops():
    """H of the averaged base and new (CoCoOp's "average over datasets"), checked on its README rows."""
    assert harmonic_mean(80.47, 71.69) == pytest.approx(75.83, abs=0.005)
    assert harmonic_mean(80.73, 73.6) == pytest.approx(77.00, abs=0.005)
    rows = [{"base": {"mean": 90.0, "n": 3}, "new": {"mean": 50.0, "n": 3}},
            {"base": {"mean": 70.0, "n": 3}, "new": {"mean": 70.0, "n": 3}}]
    avg = average_row(rows)
    assert (avg["base"], avg["new"]) == (80.0, 60.0)
    assert avg["hm"] == pytest.approx(2 * 80 * 60 / 140)  # not the mean of the rows' H (64.3 and 70)


def test_base2new_script_trains_base_evaluates_new_and_reports_h(world, fresh_data, tmp_path, capsys):
    out = tmp_path / "out"
    env = dict(os.environ, DATA=fresh_data, OUT=str(out), CLIP_WEIGHTS=world["clip"], SEEDS="1", SHOTS="2",
               GROUP="0", PTNL_CACHE_DIR=str(tmp_path / "cache"))
    opts = ["INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
            "DATALOADER.TEST.BATCH_SIZE", "50", "OPTIM.MAX_EPOCH", "1"]
    proc = subprocess.run(["bash", "scripts/ptnl/base2new.sh", "dtd", "rn50", "0.5", "gce", "KgCoOp"] + opts,
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    top = out / "dtd" / "KgCoOp" / "clip-vit" / "sym-swap-0.5" / "gce"
    run = top / "base2new" / "shots2_nctx4_cscFalse_ctpend" / "seed1"
    new = top / "base2new-new" / "shots2_nctx4_cscFalse_ctpend" / "seed1"
    res = json.load(open(run / "results.json"))
    ev = json.load(open(new / "evaluation.json"))
    assert len(res["classnames"]) == 3 and ev["num_test"] == res["num_test"]  # 3 + 3 generated classes
    assert ev["config"]["DATASET.SUBSAMPLE_CLASSES"] == "new" and ev["model_dir"] == str(run)
    table = proc.stdout[proc.stdout.index("dataset"):]
    assert "base" in table and "new" in table and " H " in table
    line = next(ln for ln in table.splitlines() if ln.startswith("DescribableTextures"))
    h = "{:.2f}".format(harmonic_mean(res["accuracy"], ev["accuracy"]))
    assert "{:.2f} (n=1)".format(res["accuracy"]) in line and "{:.2f} (n=1)".format(ev["accuracy"]) in line
    assert h in line.split()
    # the rows from the folders are the table's
    rows = base2new_rows(*collect([str(out)]))
    assert len(rows) == 1 and rows[0]["new"]["n"] == 1
    assert "DescribableTextures" in format_base2new(rows, "markdown")
    from ptnl.report.cli import main as report_main  # the results CLI's --protocol gives the same table
    assert report_main([str(out), "--protocol", "base2new"]) == 0
    assert line in capsys.readouterr().out
