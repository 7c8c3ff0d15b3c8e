"""The caches answer only for the files they were computed from (issue 25): image features and
zero-shot logits key on each image file's identity (size and mtime, or with
TRAINER.PTNL.CACHE_VERIFY sha256 its bytes), so an image replaced in place, touched or deleted is
recomputed, while unchanged files are read back without recomputation. ``python -m ptnl.io.cache
report --check`` counts the stale entries and ``clear --stale`` removes them; the pocket world and
CoOp's few-shot pickles check their files too. LinearProbe's ``coop`` protocol fits on the image
encoder's raw output, as CoOp's lpclip does."""
import copy
import json
import os
import os.path as osp
import random

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SMALL_OPTS, coop_pickle
from ptnl import compat
from ptnl.config import extend_cfg
from ptnl.io import cache

import datasets  # noqa: F401
import trainers.ptnl  # noqa: F401


@pytest.fixture
def computed(monkeypatch):
    """The number of images each call of ``image_features`` encoded (a cache hit encodes none)."""
    import ptnl.clip.features as features
    calls, real = [], features.image_features

    def counting(encode_image, paths, *args, **kwargs):
        calls.append(len(list(paths)))
        return real(encode_image, paths, *args, **kwargs)
    monkeypatch.setattr(features, "image_features", counting)
    return calls


def use_cache(monkeypatch, folder):
    """A private cache folder (and no weights digest memoised in memory from another one)."""
    monkeypatch.setenv("PTNL_CACHE_DIR", str(folder))
    monkeypatch.setattr("ptnl.clip.weights._DIGESTS", {})
    return osp.join(str(folder), "features")


def replace_with_noise(paths, seed, format="JPEG"):
    """Rewrite each file in place (same path) with a random-noise image (a BMP's length depends on
    its size only)."""
    rng = np.random.default_rng(seed)
    for p in paths:
        Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(p, format=format)


def rewrite_same_size_and_mtime(path, seed):
    """Rewrite the BMP ``path`` with another noise BMP of the same length, then restore its
    modification time: what ``stat`` cannot tell from the original."""
    st = os.stat(path)
    replace_with_noise([path], seed, format="BMP")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


def config(data, clip, out, trainer="LinearProbe", opts=()):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file("configs/trainers/PTNL/rn50.yaml")
    cfg.merge_from_list(["DATASET.ROOT", data, "DATASET.NAME", "DescribableTextures", "DATASET.NUM_SHOTS", 8,
                         "SEED", 1, "TRAINER.NAME", trainer, "MODEL.BACKBONE.NAME", clip,
                         "OUTPUT_DIR", str(out)] + SMALL_OPTS + list(opts))
    cfg.freeze()
    return cfg


def linear_probe(data, clip, out):
    """A LinearProbe run with one fit (fixed C: this file is about the features, not the search);
    returns (test accuracy, the trainer)."""
    cfg = config(data, clip, out, opts=["TRAINER.LINEAR_PROBE.PROTOCOL", "fixed"])
    compat.set_random_seed(1)
    trainer = compat.build_trainer(cfg)
    trainer.train()
    return json.load(open(osp.join(trainer.output_dir, "results.json")))["accuracy"], trainer


# ----------------------------------------------------------------------------- the scenario
def test_test_images_replaced_in_place_give_the_fresh_cache_accuracy(world, fresh_data, tmp_path, monkeypatch,
                                                                      computed):
    """LinearProbe, then every test image replaced by noise at the same path: a warm cache gives
    what an empty one gives (it used to give the old images' accuracy on pure noise), recomputing
    only the test split; unchanged files are read from the cache (nothing encoded)."""
    use_cache(monkeypatch, tmp_path / "warm")
    before, trainer = linear_probe(fresh_data, world["clip"], tmp_path / "a")
    n_train, n_test = len(trainer.train_items), len(trainer.dm.dataset.test)
    assert computed == [n_train, n_test]
    del computed[:]
    again, _ = linear_probe(fresh_data, world["clip"], tmp_path / "b")
    assert again == before and computed == []  # warm cache, unchanged files: all hits

    replace_with_noise([d.impath for d in trainer.dm.dataset.test], seed=0)
    warm, _ = linear_probe(fresh_data, world["clip"], tmp_path / "c")
    assert computed == [n_test]  # the training features still come from the cache
    use_cache(monkeypatch, tmp_path / "empty")
    fresh, _ = linear_probe(fresh_data, world["clip"], tmp_path / "d")
    assert warm == fresh
    # measured: 94.4% on the generated textures, 13.9% on noise (chance: 16.7%, 6 classes)
    assert before > fresh + 20, (before, fresh)


# ----------------------------------------------------------------------------- zero-shot logits
@pytest.fixture
def zero_shot(world, fresh_data, tmp_path, monkeypatch):
    """The two readers of the zero-shot-logits cache over the training split's images: confusion
    noise's scorer and UPL's pseudo-labelling (built once; it fills the cache on the way)."""
    from ptnl.noise.confusion import ConfusionScorer
    use_cache(monkeypatch, tmp_path / "cache")
    cfg = config(fresh_data, world["clip"], tmp_path / "upl", trainer="UPL", opts=["OPTIM.MAX_EPOCH", 1])
    compat.set_random_seed(1)
    upl = compat.build_trainer(cfg)
    paths = [d.impath for d in upl.dm.dataset.full_train]
    scorer = ConfusionScorer(cfg, upl.dm.dataset.classnames)
    return paths, {"confusion": lambda ps: torch.from_numpy(scorer(ps)).softmax(1).numpy(),
                   "upl": upl.zero_shot_probs}


@pytest.mark.parametrize("reader", ["confusion", "upl"])
def test_training_images_replaced_in_place_are_scored_again(reader, zero_shot, tmp_path, monkeypatch, computed):
    paths, readers = zero_shot
    score = readers[reader]
    before = score(paths)
    del computed[:]
    assert np.array_equal(score(paths), before) and computed == []  # unchanged: read back, nothing encoded
    replaced = paths[::10]
    replace_with_noise(replaced, seed=1)
    warm = score(paths)
    assert computed == [len(replaced)]  # only the replaced images, the other rows are kept
    use_cache(monkeypatch, tmp_path / "empty")
    fresh = score(paths)
    np.testing.assert_allclose(warm, fresh, rtol=1e-5, atol=1e-6)
    changed = [i for i, p in enumerate(paths) if p in set(replaced)]
    assert not np.allclose(before[changed], fresh[changed], atol=1e-4)  # the old rows were wrong


# ----------------------------------------------------------------------------- what each mode notices
def features(paths, clip, verify, transform):
    """Cached features of ``paths`` through a cheap encoder (the pixels' per-channel means and stds)."""
    from ptnl.clip.features import cached_image_features
    encode = lambda x: torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)  # noqa: E731
    return cached_image_features(encode, clip, "DescribableTextures", "test", paths, transform, "cpu",
                                 batch_size=50, raw=True, verify=verify)


@pytest.fixture
def images(world, fresh_data, tmp_path, monkeypatch):
    root = use_cache(monkeypatch, tmp_path / "cache")
    folder = osp.join(fresh_data, "dtd", "images", "banded")
    paths = sorted(osp.join(folder, f) for f in os.listdir(folder))[:12]
    tfm = compat.build_transform(config(fresh_data, world["clip"], tmp_path / "x"), is_train=False)
    return paths, lambda verify, ps=None: features(ps or paths, world["clip"], verify, tfm), root


@pytest.mark.parametrize("verify", ["stat", "sha256"])
def test_touched_rewritten_and_deleted_files(verify, images, computed):
    paths, feats, _ = images
    replace_with_noise(paths[1:2], seed=1, format="BMP")  # rewritten below with the same length
    first = feats(verify)
    assert computed == [12]
    assert torch.equal(feats(verify), first) and computed == [12]  # hit

    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes, new mtime
    assert torch.equal(feats(verify), first)
    assert computed == ([12, 12] if verify == "stat" else [12])  # sha256 knows the bytes are the same

    del computed[:]
    rewrite_same_size_and_mtime(paths[1], seed=2)
    again = feats(verify)
    if verify == "stat":  # the documented blind spot: same size, same mtime, other bytes
        assert computed == [] and torch.equal(again, first)
    else:
        assert computed == [12] and not torch.equal(again[1], first[1]) and torch.equal(again[2:], first[2:])

    os.remove(paths[2])
    with pytest.raises(IOError, match="Cannot read image"):  # recomputed, not served from the cache
        feats(verify)


def test_unknown_verify_mode_names_the_key(images):
    """The config's values of CACHE_VERIFY are the cache's modes (both checks take them)."""
    from ptnl.config import check_values
    with pytest.raises(ValueError, match="TRAINER.PTNL.CACHE_VERIFY must be one of"):
        images[1]("content")
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    for mode in cache.VERIFY_MODES:
        cfg.TRAINER.PTNL.CACHE_VERIFY = mode
        check_values(cfg)
        assert cache.check_verify(mode) == mode
    cfg.TRAINER.PTNL.CACHE_VERIFY = "content"
    with pytest.raises(ValueError, match="CACHE_VERIFY"):
        check_values(cfg)


# ----------------------------------------------------------------------------- report --check, clear --stale
def test_report_check_and_clear_stale_count_the_stale_entries(images, capsys, computed):
    paths, feats, root = images
    feats("stat", paths[:6])
    feats("stat", paths[6:])
    feats("sha256", paths[6:])
    # an image-features entry written before entries recorded their files: no key of today reaches it
    old = osp.join(root, "ab", "ab" + "0" * 62)
    os.makedirs(osp.dirname(old), exist_ok=True)
    torch.save(torch.zeros(1), old + ".pt")
    json.dump({"kind": "image_features", "dataset": "DescribableTextures"}, open(old + ".json", "w"))
    cache.main(["report", "--check"])
    out = capsys.readouterr().out
    assert "stale: 1 of " in out and "written before entries recorded their files" in out

    replace_with_noise(paths[:1], seed=3)  # stale for the first entry only
    os.remove(paths[7])  # stale for the stat and the sha256 entries of the second half
    cache.main(["report", "--check"])
    out = capsys.readouterr().out
    n = len(cache.entries(root))  # the three above, the old one, the weights' digest
    assert n == 5 and "stale: 4 of 5 entries" in out, out
    assert "1 of 6 files changed or missing, e.g. {}".format(paths[0]) in out
    assert "1 of 6 files changed or missing, e.g. {}".format(paths[7]) in out

    with pytest.raises(SystemExit):  # a flag of the other action is refused, not a full clear
        cache.main(["clear", "--check"])
    assert len(cache.entries(root)) == 5 and "--check goes with report" in capsys.readouterr().err
    cache.main(["clear", "--stale"])
    assert "Removed 4 stale entries" in capsys.readouterr().out
    assert [e["about"]["kind"] for e in cache.entries(root)] == ["file_digest"]
    cache.main(["report", "--check"])
    assert "stale: 0 of 1 entries" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the linear probe's features
def test_linear_probe_fits_on_the_image_encoders_raw_output(world, tmp_path, monkeypatch):
    """The features the ``coop`` protocol fits on (search and final fit) are ``encode_image`` of
    the few-shot images under the test transform, not L2-normalised (lpclip's features)."""
    import ptnl.trainers.baselines as baselines
    use_cache(monkeypatch, tmp_path / "cache")
    seen = {}

    def search(x, y, xv, yv, max_iter):  # the search itself is tested against lpclip elsewhere
        seen.update(train=x, val=xv)
        return 1.0, [(1.0, 1.0)]
    real_fit = baselines.fit_logistic_regression

    def fit(x, y, c, max_iter):
        seen["fit"] = x
        return real_fit(x, y, c, max_iter)
    monkeypatch.setattr(baselines, "coop_search_c", search)
    monkeypatch.setattr(baselines, "fit_logistic_regression", fit)
    cfg = config(world["data"], world["clip"], tmp_path / "lp")
    compat.set_random_seed(1)
    trainer = compat.build_trainer(cfg)
    trainer.train()
    assert cfg.TRAINER.LINEAR_PROBE.PROTOCOL == "coop"
    tfm = trainer.dm.test_loader.dataset.transform
    model = trainer.model.image_encoder
    for name, items in (("train", trainer.train_items), ("val", trainer.dm.dataset.val)):
        with torch.no_grad():
            direct = model(torch.stack([tfm(Image.open(d.impath).convert("RGB")) for d in items])).float().numpy()
        np.testing.assert_allclose(seen[name], direct, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(seen["fit"], seen["train"])
    assert abs(np.linalg.norm(seen["train"], axis=1).mean() - 1) > 0.5  # measured: about 4.3 here


# ----------------------------------------------------------------------------- few-shot pickles, the pocket world
def test_coop_pickle_naming_moved_images_is_refused(fresh_data, tmp_path, monkeypatch):
    from ptnl.data.base import DatasetError
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["DATASET.ROOT", fresh_data, "DATASET.NAME", "DescribableTextures",
                         "DATASET.NUM_SHOTS", 4, "SEED", 7])
    DTD = compat.DATASET_REGISTRY.get("DescribableTextures")
    random.seed(7)
    ds = DTD(cfg)
    moved = [copy.copy(d) for d in ds.train_x]  # the dataset as it was before it was moved here
    for d in moved:
        d._impath = d.impath.replace(fresh_data, str(tmp_path / "elsewhere"))
    with open(osp.join(fresh_data, "dtd", "split_fewshot", "shot_4-seed_8.pkl"), "wb") as f:
        f.write(coop_pickle({"train": moved, "val": ds.val}, monkeypatch))
    cfg.merge_from_list(["SEED", 8])
    with pytest.raises(DatasetError, match=r"names 24 image\(s\) that are not on disk.*delete it"):
        DTD(cfg)


def test_pocket_world_notices_changed_files(tmp_path):
    """The pocket dataset is checked by its files' size and mtime, and by content when those moved:
    touched files are still the recorded world (and recorded afresh), changed bytes are not."""
    from ptnl.data.generated import make_dtd
    from ptnl.pocket import images_digest, world_identity, world_is_recorded
    root = str(tmp_path / "data")
    make_dtd(root, num_classes=2, per_class=4, size=16)
    path = str(tmp_path / "manifest.json")
    manifest = {"images_sha256": images_digest(root), "files": world_identity(root)}
    assert world_is_recorded(manifest, root, path) and not osp.exists(path)  # stat matches: nothing read
    image = osp.join(root, "dtd", "images", "banded", sorted(os.listdir(osp.join(root, "dtd", "images", "banded")))[0])
    st = os.stat(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert world_is_recorded(manifest, root, path)  # same bytes: recorded again with the new mtime
    manifest = json.load(open(path))
    assert world_is_recorded(manifest, root) and not cache.changed_files(
        dict(manifest["files"], paths=[osp.join(root, p) for p in manifest["files"]["paths"]]))
    replace_with_noise([image], seed=4)
    assert not world_is_recorded(manifest, root, path)
