"""Food-101N read through its dataset class from a small generated copy of the original release
layout (images/<class>/<key>.jpg, meta/classes.txt with its header, meta/imagelist.tsv,
meta/verified_{train,val}.tsv) and of Food-101 (official meta/test.txt, CoOp's split file), under
both test protocols: the few-shot cache, the verified noise statistics and the errors."""
import hashlib
import json
import os
import os.path as osp
import random

import numpy as np
import pytest

from ptnl import compat
from ptnl.config import extend_cfg
from ptnl.data.base import DatasetError
from ptnl.noise.types import NoiseError
from conftest import run_py
from test_datasets_all import REPO, write_images, write_text

import datasets  # noqa: F401  (registers every dataset)

CLASSES = ["apple_pie", "baby_back_ribs", "beef_carpaccio"]
PER_CLASS = 6  # Food-101N images per class
# (class index, image index) -> verification label; the rest are not verified
VERIFIED_TRAIN = {(0, 0): 1, (0, 1): 0, (1, 0): 1, (2, 3): 0}
VERIFIED_VAL = {(1, 5): 1, (2, 0): 0}


def key(c, i):
    return hashlib.md5("{}-{}".format(c, i).encode()).hexdigest()


def make_food101n(root, *, header=True, imagelist=True):
    """Write the release layout under ``<root>/food-101n`` and Food-101 under ``<root>/food-101``:
    3 classes, 6 noisy images each; Food-101 has 4 images per class, the official test list names
    2 of them, CoOp's split file puts 1 in its test part."""
    d = osp.join(root, "food-101n")
    rels = ["{}/{}".format(c, key(c, i)) for c in CLASSES for i in range(PER_CLASS)]
    write_images([osp.join(d, "images", r + ".jpg") for r in rels])
    write_text(osp.join(d, "meta", "classes.txt"), (["class_name"] if header else []) + CLASSES)
    if imagelist:
        write_text(osp.join(d, "meta", "imagelist.tsv"), ["class_name/key"] + rels)
    for name, table in (("verified_train.tsv", VERIFIED_TRAIN), ("verified_val.tsv", VERIFIED_VAL)):
        lines = ["class_name/key\tverification_label"]
        lines += ["{}/{}\t{}".format(CLASSES[c], key(CLASSES[c], i), v) for (c, i), v in table.items()]
        write_text(osp.join(d, "meta", name), lines)
    f = osp.join(root, "food-101")
    write_images([osp.join(f, "images", c, "{}.jpg".format(100 + i)) for c in CLASSES for i in range(4)])
    write_text(osp.join(f, "meta", "classes.txt"), CLASSES)  # Food-101's: no header
    write_text(osp.join(f, "meta", "test.txt"), ["{}/{}".format(c, 100 + i) for c in CLASSES for i in (2, 3)])
    split = {"train": [["{}/100.jpg".format(c), k, c] for k, c in enumerate(CLASSES)],
             "val": [["{}/101.jpg".format(c), k, c] for k, c in enumerate(CLASSES)],
             "test": [["{}/102.jpg".format(c), k, c] for k, c in reversed(list(enumerate(CLASSES)))]}
    with open(osp.join(f, "split_zhou_Food101.json"), "w") as fh:
        json.dump(split, fh, indent=4)
    return d


def make_cfg(root, shots=-1, seed=1, opts=()):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["DATASET.ROOT", str(root), "DATASET.NAME", "Food101N", "DATASET.NUM_SHOTS", shots,
                         "SEED", seed] + list(opts))
    return cfg


def build(root, shots=-1, seed=1, protocol="food101", opts=()):
    cfg = make_cfg(root, shots, seed, ["DATASET.FOOD101N.TEST_PROTOCOL", protocol] + list(opts))
    random.seed(cfg.SEED)
    return compat.DATASET_REGISTRY.get("Food101N")(cfg)


def rel(d, folder):
    return osp.relpath(d.impath, folder).replace(os.sep, "/")


@pytest.mark.parametrize("protocol, expected_test", [
    ("food101", ["{}/{}.jpg".format(c, 100 + i) for c in CLASSES for i in (2, 3)]),  # file order
    ("coop", ["{}/102.jpg".format(c) for c in reversed(CLASSES)]),  # the split's test part, in its order
])
def test_reads_release_layout_with_both_protocols(protocol, expected_test, tmp_path):
    d = make_food101n(str(tmp_path))
    ds = build(tmp_path, protocol=protocol)
    assert ds.classnames == CLASSES and ds.num_classes == 3  # the header line is not a class
    assert ds.template == "a photo of {}, a type of food."
    assert [rel(x, osp.join(d, "images")) for x in ds.train_x] == \
           ["{}/{}.jpg".format(c, key(c, i)) for c in CLASSES for i in range(PER_CLASS)]
    assert [x.label for x in ds.train_x] == [k for k in range(3) for _ in range(PER_CLASS)]
    food = osp.join(str(tmp_path), "food-101", "images")
    assert [rel(x, food) for x in ds.test] == expected_test
    for x in ds.test:
        assert ds.classnames[x.label] == x.classname and osp.isfile(x.impath)
    assert [x.impath for x in ds.val] == [x.impath for x in ds.test]  # no val of its own
    assert not [f for f in os.listdir(d) if f.startswith("split_")]  # nothing written without shots


def test_fewshot_drawn_by_given_label_cached_and_shared_by_protocols(tmp_path, capsys):
    d = make_food101n(str(tmp_path))
    first = build(tmp_path, shots=2, seed=3, protocol="food101")
    cache = osp.join(d, "split_fewshot", "shot_2-seed_3." + ("pkl" if compat.ENGINE == "dassl" else "ptnl.json"))
    assert os.listdir(osp.join(d, "split_fewshot")) == [osp.basename(cache)]
    assert sorted(x.label for x in first.train_x) == [0, 0, 1, 1, 2, 2]
    pool = [x.impath for x in build(tmp_path).train_x]
    random.seed(3)  # Dassl's draw: random.sample per class, in pool order
    expected = [p for k in range(3) for p in random.sample(pool[k * PER_CLASS:(k + 1) * PER_CLASS], 2)]
    assert [x.impath for x in first.train_x] == expected
    if compat.ENGINE != "dassl":
        assert set(json.load(open(cache))) == {"train"}  # train only: val is the test list
    capsys.readouterr()
    random.seed(999)
    coop = build(tmp_path, shots=2, seed=3, protocol="coop")
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out
    assert [x.impath for x in coop.train_x] == expected
    assert len(coop.test) == 3 and len(first.test) == 6


def test_noise_record_reports_verified_rate(tmp_path):
    d = make_food101n(str(tmp_path))
    ds = build(tmp_path)
    nr = ds.noise_record
    assert (nr["type"], nr["mode"], nr["rate"]) == ("real", "food101n", 0.0)
    assert nr["num_samples"] == 18
    v = nr["verified"]
    assert (v["num_verified"], v["num_verified_wrong"], v["num_verified_right"]) == (6, 3, 3)
    assert v["verified_from"] == {"verified_train.tsv": 4, "verified_val.tsv": 2}
    assert nr["realised_rate"] == v["realised_rate"] == 0.5 and nr["num_noisy"] == 3
    assert nr["per_class"]["0"] == {"shots": 6, "verified": 2, "wrong": 1}
    assert nr["per_class"]["2"] == {"shots": 6, "verified": 2, "wrong": 2}
    by_path = {s["impath"]: s["verification_label"] for s in nr["samples"]}
    table = {**VERIFIED_TRAIN, **VERIFIED_VAL}
    for k, c in enumerate(CLASSES):
        for i in range(PER_CLASS):
            assert by_path[osp.join(d, "images", c, key(c, i) + ".jpg")] == table.get((k, i))
    assert ds.true_labels == [x.label for x in ds.train_x]  # the release gives no true class
    json.dumps(nr, allow_nan=False)  # noise.json is plain JSON

    few = build(tmp_path, shots=1, seed=1)  # of the drawn set only
    labels = [s["verification_label"] for s in few.noise_record["samples"]]
    assert few.noise_record["num_samples"] == 3
    assert few.noise_record["verified"]["num_verified"] == sum(x is not None for x in labels)
    assert few.noise_record["num_noisy"] == labels.count(0)


def test_synthetic_noise_is_an_error_unless_asked(tmp_path):
    make_food101n(str(tmp_path))
    for opts in (["DATASET.NOISE.RATE", 0.25], ["DATASET.NOISE.MODE", "release"]):
        with pytest.raises(NoiseError) as e:
            build(tmp_path, shots=2, opts=opts)
        assert "DATASET.NOISE.RATE" in str(e.value) and "DATASET.FOOD101N.SYNTHETIC_NOISE" in str(e.value)
    ds = build(tmp_path, shots=4, opts=["DATASET.NOISE.RATE", 0.5, "DATASET.NOISE.MODE", "flip",
                                        "DATASET.FOOD101N.SYNTHETIC_NOISE", True])
    nr = ds.noise_record
    assert nr["mode"] == "flip" and nr["num_noisy"] == 6  # the synthetic record, asked for
    assert nr["real_noise"]["num_samples"] == 12 and "labels" not in nr["real_noise"]


def test_food101_folder_key_and_walk_without_imagelist(tmp_path):
    make_food101n(str(tmp_path / "n"), imagelist=False)
    os.rename(str(tmp_path / "n" / "food-101"), str(tmp_path / "elsewhere"))
    ds = build(tmp_path / "n", protocol="coop", opts=["DATASET.FOOD101N.FOOD101_DIR", str(tmp_path / "elsewhere")])
    assert len(ds.train_x) == 18 and len(ds.test) == 3
    assert [x.impath for x in ds.train_x[:PER_CLASS]] == sorted(x.impath for x in ds.train_x[:PER_CLASS])
    assert ds.test[0].impath.startswith(str(tmp_path / "elsewhere"))


def test_classes_header_required(tmp_path):
    d = make_food101n(str(tmp_path), header=False)
    with pytest.raises(DatasetError) as e:
        build(tmp_path)
    assert osp.join(d, "meta", "classes.txt") in str(e.value) and '"class_name"' in str(e.value)


@pytest.mark.parametrize("protocol, missing", [
    ("food101", osp.join("food-101n", "meta", "classes.txt")),
    ("food101", osp.join("food-101n", "meta", "verified_train.tsv")),
    ("coop", osp.join("food-101n", "meta", "verified_val.tsv")),
    ("food101", osp.join("food-101", "meta", "test.txt")),
    ("coop", osp.join("food-101", "split_zhou_Food101.json")),
    ("food101", "food-101"),
    ("coop", "food-101n"),
])
def test_missing_file_named(protocol, missing, tmp_path):
    make_food101n(str(tmp_path))
    path = osp.join(str(tmp_path), missing)
    if osp.isdir(path):
        os.rename(path, path + "-moved")
    else:
        os.remove(path)
    with pytest.raises(DatasetError) as e:
        build(tmp_path, protocol=protocol)
    assert path in str(e.value)
    if missing == "food-101":
        assert "DATASET.FOOD101N.FOOD101_DIR" in str(e.value)


def test_missing_drawn_image_named(tmp_path):
    d = make_food101n(str(tmp_path))
    gone = osp.join(d, "images", CLASSES[1], key(CLASSES[1], 2) + ".jpg")
    os.remove(gone)
    with pytest.raises(DatasetError) as e:
        build(tmp_path)
    assert gone in str(e.value) and "imagelist.tsv" in str(e.value)


def test_unknown_protocol_and_config_file(tmp_path):
    make_food101n(str(tmp_path))
    with pytest.raises(ValueError, match="TEST_PROTOCOL.*coop"):
        build(tmp_path, protocol="joapr")
    import yaml
    with open(osp.join(REPO, "configs", "datasets", "food101n.yaml")) as f:
        assert yaml.safe_load(f) == {"DATASET": {"NAME": "Food101N"}}
    cfg = make_cfg(tmp_path)
    assert (cfg.DATASET.FOOD101N.TEST_PROTOCOL, cfg.DATASET.FOOD101N.FOOD101_DIR,
            cfg.DATASET.FOOD101N.SYNTHETIC_NOISE) == ("food101", "", False)


def test_train_py_end_to_end(tmp_path):
    """One short run through train.py: noise.json and results.json carry the verified rate."""
    from conftest import run_py, train_args
    from ptnl.data.generated import make_clip
    make_food101n(str(tmp_path / "data"))
    clip = make_clip(str(tmp_path / "clip-vit.pt"), kind="vit")
    out = str(tmp_path / "out")
    args = train_args(str(tmp_path / "data"), clip, out, shots=6, rate=0, loss="ce", epochs=1,
                      extra=["DATASET.FOOD101N.TEST_PROTOCOL", "coop"])
    args[args.index("configs/datasets/dtd.yaml")] = "configs/datasets/food101n.yaml"
    run_py(args)
    noise = json.load(open(osp.join(out, "noise.json")))
    assert noise["realised_rate"] == 0.5 and noise["verified"]["num_verified"] == 6
    res = json.load(open(osp.join(out, "results.json")))
    assert res["dataset"] == "Food101N" and res["noise"]["realised_rate"] == 0.5
    assert res["config"]["DATASET.FOOD101N.TEST_PROTOCOL"] == "coop"
    assert "realised 0.5000" in open(osp.join(out, "log.txt")).read()


@pytest.mark.parametrize("verified", [True, False])
def test_selection_partition_scored_on_verification_labels(tmp_path, monkeypatch, verified):
    """Food-101N knows no true classes: NLPrompt's noisy set is scored on the verified items (6 of 18,
    3 verified wrong), precision and recall computed here from the verification table; with no
    verified item both are n/a (None), not 0."""
    from ptnl.data.generated import make_clip
    from test_methods import build as build_trainer
    d = make_food101n(str(tmp_path / "data"))
    if not verified:
        for name in ("verified_train.tsv", "verified_val.tsv"):
            write_text(osp.join(d, "meta", name), ["class_name/key\tverification_label"])
    clip = make_clip(str(tmp_path / "clip-vit.pt"), kind="vit")
    t = build_trainer(str(tmp_path / "data"), clip, tmp_path / "out", "NLPrompt", shots=PER_CLASS,
                      dataset_cfg="configs/datasets/food101n.yaml",
                      opts=["DATASET.NOISE.RATE", 0.0, "OPTIM.MAX_EPOCH", 1])
    from ptnl.selection import nlprompt
    real, seen = nlprompt.nlprompt_partition, []
    monkeypatch.setattr(nlprompt, "nlprompt_partition", lambda *a, **kw: seen.append(real(*a, **kw)) or seen[-1])
    t.train()
    part = t.epoch_records[-1]["partition"]
    table = {**VERIFIED_TRAIN, **VERIFIED_VAL} if verified else {}
    label_of = {osp.join(d, "images", c, key(c, i) + ".jpg"): table.get((k, i))
                for k, c in enumerate(CLASSES) for i in range(PER_CLASS)}
    v = [label_of[item.impath] for item in t.train_items]
    in_u = set(t._u_idx.tolist())
    u_verified = [i for i in range(len(v)) if i in in_u and v[i] is not None]
    found = sum(v[i] == 0 for i in u_verified)
    assert part["scored_on"] == "verified" and part["num_scored"] == (6 if verified else 0)
    assert part["num_truly_noisy"] == (3 if verified else 0) and part["num_found"] == found
    assert part["precision"] == (pytest.approx(100.0 * found / len(u_verified)) if u_verified else None)
    assert part["recall"] == (pytest.approx(100.0 * found / 3) if verified else None)
    right = [i for i in range(len(v)) if v[i] == 1]  # pseudo-labels scored where the label is verified right
    pseudo = seen[-1][0]
    assert part["pseudo_label_accuracy"] == (pytest.approx(100.0 * float(np.mean(
        [pseudo[i] == t.given_labels[i] for i in right]))) if right else None)
    # the report's table says the scores are over verified items (n/a: "—")
    report = run_py(["-m", "ptnl.report", str(tmp_path / "out")]).stdout
    show = lambda x: "—" if x is None else "{:.1f}".format(x)  # noqa: E731
    assert "{} / {} (verified)".format(show(part["precision"]), show(part["recall"])) in report, report
    assert "(verified): the dataset knows no true classes (Food-101N)" in report
