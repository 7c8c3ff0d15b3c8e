"""Cross-dataset transfer and domain generalisation: the four ImageNet test sets read in CoOp's
layouts (generated here: ``classnames.txt`` and one folder per class), and ``scripts/ptnl/xd.sh``
trains on a source dataset and evaluates the trained prompt (``--eval-only``) on other datasets, with
a table of one column per target."""
import json
import os
import os.path as osp
import subprocess

import pytest

from conftest import REPO

from ptnl import compat
from ptnl.config import extend_cfg
from ptnl.data.generated import make_dtd, texture_image
from ptnl.report.protocols import collect, format_xd, xd_rows

import datasets  # noqa: F401  (registers the datasets)

# classnames.txt in ImageNet's order (sorted wnids); five of the 1000
WNIDS = [("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark"),
         ("n01491361", "tiger shark"), ("n01494475", "hammerhead shark")]


def write_images(folder, label, n=3):
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        texture_image(label, i, size=36).save(osp.join(folder, "img{}.jpg".format(i)), quality=90)


def write_classnames(ddir, order=WNIDS):
    os.makedirs(ddir, exist_ok=True)
    with open(osp.join(ddir, "classnames.txt"), "w") as f:
        f.write("".join("{} {}\n".format(w, n) for w, n in order))


def make_variants(root):
    """ImageNet-V2 (folders 0..4 by label), -Sketch (all five wnid folders), -A (three of them and a
    README.txt) and -R (another three), each with ImageNet's classnames.txt."""
    write_classnames(osp.join(root, "imagenetv2"))
    for label in range(len(WNIDS)):
        write_images(osp.join(root, "imagenetv2", "imagenetv2-matched-frequency-format-val", str(label)), label)
    write_classnames(osp.join(root, "imagenet-sketch"))
    for label, (wnid, _) in enumerate(WNIDS):
        write_images(osp.join(root, "imagenet-sketch", "images", wnid), label)
    for ddir, sub, picked in (("imagenet-adversarial", "imagenet-a", [4, 0, 2]),
                              ("imagenet-rendition", "imagenet-r", [1, 3, 4])):
        write_classnames(osp.join(root, ddir))
        for k in picked:
            write_images(osp.join(root, ddir, sub, WNIDS[k][0]), k)
    with open(osp.join(root, "imagenet-adversarial", "imagenet-a", "README.txt"), "w") as f:
        f.write("ImageNet-A\n")


def build(root, name, shots=-1):
    cfg = extend_cfg(compat.get_cfg_default())
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.SEED = root, name, shots, 1
    return compat.DATASET_REGISTRY.get(name)(cfg)


def test_variants_read_coops_layouts(tmp_path):
    root = str(tmp_path)
    make_variants(root)
    names = [n for _, n in WNIDS]
    expected = {"ImageNetV2": names, "ImageNetSketch": names,
                "ImageNetA": [names[0], names[2], names[4]],  # the folders present, in sorted wnid order
                "ImageNetR": [names[1], names[3], names[4]]}
    for name, classnames in expected.items():
        ds = build(root, name, shots=2)  # a test set: DATASET.NUM_SHOTS of the trained run does not sample it
        assert ds.classnames == classnames, name
        assert ds.num_classes == len(classnames)
        assert [d.impath for d in ds.train_x] == [d.impath for d in ds.test] and len(ds.test) == 3 * len(classnames)
        for d in ds.test:
            assert d.classname == classnames[d.label]
            assert osp.basename(osp.dirname(d.impath)) in (WNIDS[names.index(d.classname)][0], str(d.label))
    assert not any("split_fewshot" in dirs for _, dirs, _ in os.walk(root))  # nothing written beside the data


def test_imagenetv2_names_follow_the_file_order_and_missing_data_is_named(tmp_path):
    root = str(tmp_path)
    make_variants(root)
    order = [WNIDS[1], WNIDS[0]] + WNIDS[2:]  # label k is the k-th line, whatever the wnids' order
    write_classnames(osp.join(root, "imagenetv2"), order)
    assert build(root, "ImageNetV2").classnames[:2] == ["goldfish", "tench"]
    os.rename(osp.join(root, "imagenetv2", "imagenetv2-matched-frequency-format-val", "3"), osp.join(root, "gone"))
    with pytest.raises(Exception, match="class folder .*/3\""):
        build(root, "ImageNetV2")
    with open(osp.join(root, "imagenet-rendition", "classnames.txt"), "w") as f:
        f.write("n01440764 tench\n")
    with pytest.raises(Exception, match="not wnids of"):
        build(root, "ImageNetR")


def test_xd_script_evaluates_the_trained_prompt_on_each_target(world, tmp_path):
    data = tmp_path / "data"
    make_dtd(str(data), num_classes=6, per_class=40, size=36)  # the world's dataset, in a folder of its own
    make_variants(str(data))
    out = tmp_path / "out"
    env = dict(os.environ, DATA=str(data), OUT=str(out), CLIP_WEIGHTS=world["clip"], SEEDS="1", SHOTS="2",
               SOURCE="dtd", TARGETS="imagenet_a imagenetv2", GROUP="0", PTNL_CACHE_DIR=str(tmp_path / "cache"))
    opts = ["INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
            "DATALOADER.TEST.BATCH_SIZE", "50", "OPTIM.MAX_EPOCH", "1"]
    proc = subprocess.run(["bash", "scripts/ptnl/xd.sh", "rn50", "0.5", "ce", "CoCoOp"] + opts, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    top = out / "dtd" / "CoCoOp" / "clip-vit" / "sym-swap-0.5" / "ce"
    run = top / "shots2_nctx4_cscFalse_ctpend" / "seed1"
    accs = {}
    for target, n_test in (("imagenet_a", 9), ("imagenetv2", 15)):
        ev = json.load(open(top / ("xd-" + target) / "shots2_nctx4_cscFalse_ctpend" / "seed1" / "evaluation.json"))
        assert ev["model_dir"] == str(run) and ev["num_test"] == n_test and ev["trainer"] == "CoCoOp"
        accs[ev["dataset"]] = ev["accuracy"]
    rows, targets = xd_rows(*collect([str(out)]))
    assert targets == ["ImageNetA", "ImageNetV2"] and len(rows) == 1
    header, _, line = proc.stdout[proc.stdout.index("trained on"):].splitlines()[:3]
    assert header.split()[-3:] == ["ImageNetA", "ImageNetV2", "average"]
    assert "{:.2f} (n=1)".format(accs["ImageNetA"]) in line and "{:.2f} (n=1)".format(accs["ImageNetV2"]) in line
    assert line.split()[-1] == "{:.2f}".format((accs["ImageNetA"] + accs["ImageNetV2"]) / 2)
    assert "ImageNetV2" in format_xd(rows, targets, "csv").splitlines()[0]
