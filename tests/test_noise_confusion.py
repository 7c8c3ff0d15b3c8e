"""Confusion noise: each wrong label is the wrong class zero-shot CLIP scores highest."""
import numpy as np
import pytest

from ptnl.noise import NoiseError, flip_noise, noisy_count, noisy_items, swap_noise, top_wrong_class


def apply_noise(items, pool, rate, noise_type, mode, seed, num_classes, key, make_item, **options):
    """The tests' positional spelling of ``noisy_items`` (its options are keyword-only)."""
    return noisy_items(items, pool, rate=rate, noise_type=noise_type, mode=mode, seed=seed,
                       num_classes=num_classes, key=key, make_item=make_item, **options)


C, K = 5, 8


def setup(seed=0, pool_per_class=20):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(C), K)
    pool = np.repeat(np.arange(C), pool_per_class)
    return labels, pool, rng.normal(size=(len(labels), C)), rng.normal(size=(len(pool), C))


def test_top_wrong_class_excludes_true_class():
    scores = np.array([[5.0, 1.0, 2.0], [0.0, 9.0, 3.0]])
    assert top_wrong_class(scores, [0, 1]).tolist() == [2, 2]


@pytest.mark.parametrize("rate", [0.125, 0.5, 0.75])
def test_flip_confusion_labels_are_top_wrong_class(rate):
    labels, _, scores, _ = setup()
    out = flip_noise(labels, rate, C, seed=1, noise_type="confusion", scores=scores)
    assert out["noisy"].sum() == noisy_count(rate, len(labels))
    expected = top_wrong_class(scores, labels)
    assert (out["given"][out["noisy"]] == expected[out["noisy"]]).all()
    assert (out["given"][~out["noisy"]] == labels[~out["noisy"]]).all()


@pytest.mark.parametrize("rate", [0.125, 0.5, 0.75])
def test_swap_confusion_replacements_have_slot_class_as_top_wrong(rate):
    labels, pool, _, pool_scores = setup(pool_per_class=40)
    out = swap_noise(labels, pool, rate, C, seed=2, noise_type="confusion", pool_scores=pool_scores)
    top = top_wrong_class(pool_scores, pool)
    src = out["source"]
    for i in np.flatnonzero(src >= 0):
        assert pool[src[i]] != labels[i] and out["true"][i] == pool[src[i]]
        if not out["fallback"][i]:
            assert top[src[i]] == labels[i]
    assert len(set(src[src >= 0].tolist())) == int((src >= 0).sum())
    for c in range(C):
        assert int((src[labels == c] >= 0).sum()) == noisy_count(rate, K)


def test_swap_confusion_fallback_takes_highest_scoring_image():
    labels = np.repeat(np.arange(3), 2)
    pool = np.array([1, 1, 2, 2])
    # every pool image's top wrong class is 0; class 1 and 2 slots must fall back
    pool_scores = np.array([[9, 0, 1], [9, 0, 2], [9, 3, 0], [9, 1, 0]], dtype=float)
    out = swap_noise(labels, pool, 0.5, 3, seed=0, noise_type="confusion", pool_scores=pool_scores)
    assert out["fallback"].sum() >= 1
    for i in np.flatnonzero(out["fallback"]):
        c = labels[i]
        assert pool[out["source"][i]] != c
    # Slots in (rank, class) order, one noisy per class: class 0 takes an image whose top wrong class
    # is 0 (seed 0's queue order: image 2); class 1 falls back to the only unused image not of class 1
    # (image 3); class 2 falls back to the unused class-1 image scoring highest for class 2 (image 1,
    # score 2 against image 0's 1).
    assert out["source"].tolist() == [2, -1, 3, -1, -1, 1]
    assert out["fallback"].tolist() == [False, False, True, False, False, True]
    assert out["true"].tolist() == [2, 0, 2, 1, 2, 1]


def test_confusion_nested_across_rates():
    labels, pool, scores, pool_scores = setup(pool_per_class=40)
    prev_swap = prev_flip = None
    for rate in (0.125, 0.25, 0.5, 0.75):
        s = swap_noise(labels, pool, rate, C, seed=4, noise_type="confusion", pool_scores=pool_scores)
        f = flip_noise(labels, rate, C, seed=4, noise_type="confusion", scores=scores)
        if prev_swap is not None:
            m = prev_swap["source"] >= 0
            assert (s["source"][m] == prev_swap["source"][m]).all()
            assert (f["noisy"] | ~prev_flip["noisy"]).all()
        prev_swap, prev_flip = s, f


class D:
    def __init__(self, p, y, c=""):
        self.impath, self.label, self.classname = p, y, c


def test_apply_noise_calls_scorer_only_for_confusion():
    items = [D("s{}".format(i), i % 3) for i in range(12)]
    pool = [D("p{}".format(i), i % 3) for i in range(30)]
    calls = []

    def scorer(paths):
        calls.append(list(paths))
        return np.random.default_rng(len(paths)).normal(size=(len(paths), 3))
    mk = lambda p, y, c: D(p, y, c)  # noqa: E731
    apply_noise(items, pool, 0.5, "sym", "swap", 1, 3, "k", mk, score_fn=scorer)
    assert calls == []
    _, _, rec = apply_noise(items, pool, 0.5, "confusion", "swap", 1, 3, "k", mk, score_fn=scorer)
    assert calls == [[p.impath for p in pool]]
    assert rec["type"] == "confusion" and "confusion_fallbacks" in rec
    apply_noise(items, None, 0.5, "confusion", "flip", 1, 3, "k", mk, score_fn=scorer)
    assert calls[-1] == [it.impath for it in items]
    with pytest.raises(NoiseError, match="scores"):
        apply_noise(items, None, 0.5, "confusion", "flip", 1, 3, "k", mk)


@pytest.mark.parametrize("mode", ["flip", "swap"])
def test_confusion_labels_match_direct_zero_shot_computation(mode, world, tmp_path, monkeypatch):
    """Through the dataset class and the cache, every confusion label is the wrong class the
    model itself scores highest for that image (computed here directly with the model)."""
    import random

    import torch
    from PIL import Image

    from ptnl import compat
    from ptnl.clip import load_clip, tokenize
    from ptnl.config import extend_cfg
    import datasets.dtd  # noqa: F401

    monkeypatch.setenv("PTNL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("ptnl.clip.weights._DIGESTS", {})
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file("configs/trainers/PTNL/rn50.yaml")
    cfg.merge_from_list(["DATASET.ROOT", world["data"], "DATASET.NAME", "DescribableTextures",
                         "DATASET.NUM_SHOTS", 4, "SEED", 1, "DATASET.NOISE.RATE", 0.5, "DATASET.NOISE.TYPE",
                         "confusion", "DATASET.NOISE.MODE", mode, "MODEL.BACKBONE.NAME", world["clip"],
                         "INPUT.SIZE", (32, 32), "DATALOADER.NUM_WORKERS", 0])
    random.seed(1)
    ds = compat.DATASET_REGISTRY.get("DescribableTextures")(cfg)
    rec = ds.noise_record
    assert rec["type"] == "confusion" and rec["num_noisy"] == 12
    model = load_clip(world["clip"])
    tfm = compat.build_transform(cfg, is_train=False)
    with torch.no_grad():
        text = model.encode_text(tokenize(["{} texture.".format(c) for c in ds.classnames]))
        text = text / text.norm(dim=-1, keepdim=True)
    checked = agree = 0
    for s in rec["samples"]:
        if s["true_label"] == s["label"]:
            continue
        with torch.no_grad():
            img = model.encode_image(tfm(Image.open(s["impath"]).convert("RGB"))[None])
        scores = (img / img.norm(dim=-1, keepdim=True) @ text.t())[0]
        scores[s["true_label"]] = -float("inf")
        agree += int(scores.argmax()) == s["label"]
        checked += 1
    assert checked == 12
    # every noisy label is the top wrong class, except swap's fallbacks (at most one label each)
    assert agree >= 12 - rec["confusion_fallbacks"], (agree, rec["confusion_fallbacks"])
    from ptnl.io import cache
    kinds = [e["about"]["kind"] for e in cache.entries(str(tmp_path / "cache" / "features"))]
    # one entry holds the zero-shot logits; the others memoise the weights digest and the generator
    # states CLIP's initialisation left (one per load at another starting state)
    assert sorted(set(kinds)) == ["clip_init_draws", "file_digest", "zeroshot_logits"]
    assert kinds.count("zeroshot_logits") == 1 and kinds.count("file_digest") == 1
