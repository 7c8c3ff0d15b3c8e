"""DTD in CoOp's layout through the dataset class: splits, few-shot picks and caches, errors."""
import json
import os
import os.path as osp
import random

import pytest

from conftest import coop_pickle
from ptnl import compat
from ptnl.config import extend_cfg
from ptnl.data.base import DatasetError

import datasets.dtd  # noqa: F401

DTD = compat.DATASET_REGISTRY.get("DescribableTextures")


def make_cfg(root, shots=4, seed=1, rate=0.0, mode="swap"):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["DATASET.ROOT", root, "DATASET.NAME", "DescribableTextures",
                         "DATASET.NUM_SHOTS", shots, "SEED", seed, "DATASET.NOISE.RATE", rate,
                         "DATASET.NOISE.MODE", mode])
    return cfg


def build(root, **kw):
    cfg = make_cfg(root, **kw)
    random.seed(cfg.SEED)
    return DTD(cfg)


def test_reads_split_and_samples_fewshot(fresh_data):
    ds = build(fresh_data)
    assert ds.num_classes == 6
    assert ds.classnames == ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered"]
    assert len(ds.full_train) == 120 and len(ds.test) == 72
    assert len(ds.train_x) == 24 and len(ds.val) == 24  # K=4 train, min(K, 4) val per class
    assert all(osp.isabs(d.impath) and osp.isfile(d.impath) for d in ds.train_x)
    assert ds.template == "{} texture."


def test_fewshot_picks_follow_python_random(fresh_data):
    """The picks are random.sample per class after random.seed(SEED), as in Dassl."""
    ds = build(fresh_data, shots=4, seed=3)
    split = json.load(open(osp.join(fresh_data, "dtd", "split_zhou_DescribableTextures.json")))
    random.seed(3)
    by_class = {}
    for rel, label, _ in split["train"]:
        by_class.setdefault(label, []).append(rel)
    expected = []
    for label, rels in by_class.items():
        expected += random.sample(rels, 4)
    got = [osp.relpath(d.impath, osp.join(fresh_data, "dtd", "images")) for d in ds.train_x]
    assert got == expected


def test_fewshot_cache_written_and_reused(fresh_data, capsys):
    first = build(fresh_data, seed=2)
    cache_dir = osp.join(fresh_data, "dtd", "split_fewshot")
    expected = "shot_4-seed_2.pkl" if compat.ENGINE == "dassl" else "shot_4-seed_2.ptnl.json"
    assert os.listdir(cache_dir) == [expected]
    capsys.readouterr()
    random.seed(12345)  # a different random state: the cache, not the RNG, decides
    cfg = make_cfg(fresh_data, seed=2)
    second = DTD(cfg)
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out
    assert [d.impath for d in second.train_x] == [d.impath for d in first.train_x]
    assert [d.impath for d in second.val] == [d.impath for d in first.val]


def test_reads_coop_pickle_cache(fresh_data, monkeypatch):
    """CoOp's split_fewshot pickles hold dassl Datum objects; they load under either engine."""
    ds = build(fresh_data, seed=5)
    picks = list(reversed(ds.train_x))  # something the sampler would not produce
    payload = coop_pickle({"train": picks, "val": ds.val}, monkeypatch)
    cache = osp.join(fresh_data, "dtd", "split_fewshot", "shot_4-seed_6.pkl")
    with open(cache, "wb") as f:
        f.write(payload)
    loaded = build(fresh_data, seed=6)
    assert [d.impath for d in loaded.train_x] == [d.impath for d in picks]
    assert isinstance(loaded.train_x[0], compat.Datum)


def test_split_generated_when_absent(fresh_data):
    os.remove(osp.join(fresh_data, "dtd", "split_zhou_DescribableTextures.json"))
    ds = build(fresh_data, shots=-1)
    split = json.load(open(osp.join(fresh_data, "dtd", "split_zhou_DescribableTextures.json")))
    assert set(split) == {"train", "val", "test"}
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (120, 48, 72)
    assert split["train"][0][0].startswith("banded/") and split["train"][0][1:] == [0, "banded"]
    assert len(ds.train_x) == 120  # NUM_SHOTS -1: the whole split


def test_read_only_dataset_folder_uses_user_cache(fresh_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_CACHE_DIR", str(tmp_path / "cache"))
    real_access = os.access
    ddir = osp.join(fresh_data, "dtd")
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p).startswith(ddir) else real_access(p, m))
    first = build(fresh_data, seed=7)
    cached = [f for _, _, fs in os.walk(tmp_path / "cache") for f in fs]
    assert any(f.startswith("shot_4-seed_7") for f in cached)
    assert not any(f.startswith("shot_4-seed_7") for f in os.listdir(osp.join(ddir, "split_fewshot")))
    # and reads it back: the second build samples nothing (sampling would fail) and gets the same sets
    monkeypatch.setattr(DTD, "generate_fewshot_dataset",
                        lambda *a, **k: pytest.fail("sampled again instead of reading the user-cache file"))
    again = build(fresh_data, seed=7)
    assert [(d.impath, d.label) for d in again.train_x] == [(d.impath, d.label) for d in first.train_x]
    assert [(d.impath, d.label) for d in again.val] == [(d.impath, d.label) for d in first.val]


def test_missing_dataset_folder_names_folder_and_split(tmp_path):
    with pytest.raises(DatasetError) as e:
        build(str(tmp_path / "nowhere"))
    msg = str(e.value)
    assert osp.join(str(tmp_path / "nowhere"), "dtd") in msg and "split_zhou_DescribableTextures.json" in msg


def test_missing_split_file_and_images(tmp_path):
    os.makedirs(tmp_path / "dtd")
    with pytest.raises(DatasetError, match="split_zhou_DescribableTextures.json"):
        build(str(tmp_path))


def test_missing_image_listed_in_split(fresh_data):
    os.remove(osp.join(fresh_data, "dtd", "images", "bumpy", "bumpy_0003.jpg"))
    with pytest.raises(DatasetError, match=r"1 images listed .* missing .*bumpy_0003\.jpg"):
        build(fresh_data)


def test_noise_applied_after_sampling_keeps_true_labels(fresh_data):
    clean = build(fresh_data, seed=1)
    noisy = build(fresh_data, seed=1, rate=0.5)
    assert len(noisy.train_x) == len(clean.train_x)
    rec = noisy.noise_record
    assert rec["num_noisy"] == 12 and rec["realised_rate"] == 0.5
    for d, t in zip(noisy.train_x, noisy.true_labels):
        assert ("/{}/".format(noisy.classnames[t])) in d.impath  # the true class is the image's folder
    assert [s["true_label"] for s in rec["samples"]] == noisy.true_labels
    assert [s["label"] for s in rec["samples"]] == [d.label for d in noisy.train_x]
    assert noisy.num_classes == 6 and noisy.classnames == clean.classnames


def test_a_dataset_class_brings_its_template_and_an_unknown_name_is_an_error():
    """A dataset's zero-shot template sits on its class (registered by name); a name without one is a
    one-line error naming what to set, never the silent "a photo of a {}." fallback."""
    from ptnl.clip.templates import dataset_template
    from ptnl.data.base import PTNLDatasetBase
    from ptnl.errors import ConfigError

    class ToyBirds(PTNLDatasetBase):
        template = "a photo of a {}, a type of toy bird."

    assert dataset_template("ToyBirds") == "a photo of a {}, a type of toy bird."
    assert dataset_template("DescribableTextures") == "{} texture."  # CoOp's table
    with pytest.raises(ConfigError, match=r"No zero-shot template for dataset 'ToyFish' \(DATASET.NAME\): set "
                                          r"template = .* on its class"):
        dataset_template("ToyFish")
    with pytest.raises(ConfigError, match="one '{}' for the class name"):
        type("ToyBad", (PTNLDatasetBase,), {"template": "birds"})
