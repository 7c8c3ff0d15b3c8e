"""DATASET.NOISE.MODE release (issue 15 item 4): the released code's few-shot and noise sampler.

(a) ``release_noise`` picks what a transcription of the released function
(CEWu/PTNL ``trainers/utils.py`` ``select_top_k_similarity_per_class_with_noisy_label``), written
below in that function's own step-by-step style, picks on a generated split; (b) its invariants;
(c) train.py writes a noise.json naming the protocol; (d) ``RELEASE=1`` in main.sh."""
import json
import math
import os.path as osp
import random
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import REPO, run_py, train_args
from ptnl.noise import NoiseError, check_protocol, noisy_count, noisy_items
from ptnl.noise.protocols import release_noise
from test_scripts_ux import fake, out_dir  # noqa: F401  (the fake PYTHON fixture)


def released_sampler(img_paths, gt_label_dict, K, random_seed, num_fp):
    """The released sampler, step by step as the release does it: per class (ascending), K picks
    from the first half of its images; the first num_fp of them overwritten by images from the
    other classes' second halves, drawn with Python's global ``random.choices``. Returns class ->
    the class's paths in pick order."""
    ids = gt_label_dict.values()
    num_class = len(set(ids))
    class_paths = {}
    for c in range(num_class):
        class_paths[c] = np.array([])
    for path, label in gt_label_dict.items():
        class_paths[label] = np.append(class_paths[label], np.array(path))
    path_index = {p: i for i, p in enumerate(img_paths)}
    rng = np.random.default_rng(seed=random_seed)
    first_half, second_half, second_all = {}, {}, []
    for c in list(set(ids)):
        cut = int(math.ceil(len(class_paths[c]) * 0.5))
        index_of_class = []
        for p in list(class_paths[c]):
            index_of_class.append(path_index[p])
        first_half[c] = index_of_class[:cut]
        second_half[c] = index_of_class[cut:]
        second_all.extend(index_of_class[cut:])
    second_all = set(second_all)
    taken = set()
    out = {}
    for c in list(set(ids)):
        first = first_half[c]
        candidates = second_all.difference(first, second_half[c], taken)
        wrong = random.choices(list(candidates), k=num_fp)
        taken.update(wrong)
        paths = img_paths[first]
        replace = len(paths) < K
        draw = rng.choice(len(paths), size=K, replace=replace)
        paths = paths[draw]
        for i in range(num_fp):
            paths[i] = img_paths[wrong][i]
        out[c] = list(paths)
    return out


def generated_split(seed=0, num_classes=7):
    """Labels of a training split in a shuffled order, class sizes 21..60 (one class's first
    half smaller than 16), and its image paths."""
    r = np.random.default_rng(seed)
    sizes = r.integers(36, 61, size=num_classes)
    sizes[2] = 21  # first half 11 < K = 16: the release draws with replacement there
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])
    labels = labels[r.permutation(len(labels))]
    paths = np.array(["img/{:05d}.jpg".format(i) for i in range(len(labels))])
    return labels, paths


# ----------------------------------------------------------------------------- (a) transcription
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("rate,K", [(0.0, 16), (0.25, 16), (0.5, 16), (0.5, 8), (0.75, 4)])
def test_picks_equal_the_released_function_with_duplicates(seed, rate, K):
    labels, paths = generated_split(seed)
    gt = {p: int(y) for p, y in zip(paths, labels)}
    random.seed(seed)  # the release's global random, seeded with the run's seed (JoAPR seeds it right there)
    ref = released_sampler(paths, gt, K, seed, noisy_count(rate, K))
    ours = release_noise(labels, rate, K, 7, seed, "sym", duplicates=True)
    assert {c: [paths[i] for i in p] for c, p in ours["picks"].items()} == ref
    assert ours["num_fp"] == noisy_count(rate, K)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75])
def test_clean_picks_equal_the_released_function_without_duplicates(seed, rate):
    """Without duplicates the clean picks are the release's wherever its draw is without
    replacement (first half >= K); the wrong ones come from the same candidates, drawn by sample."""
    K = 16
    labels, paths = generated_split(seed)
    gt = {p: int(y) for p, y in zip(paths, labels)}
    random.seed(seed)
    ref = released_sampler(paths, gt, K, seed, noisy_count(rate, K))
    ours = release_noise(labels, rate, K, 7, seed, "sym")
    num_fp = noisy_count(rate, K)
    for c, picks in ours["picks"].items():
        if c == 2:  # first half 11 < K: the release repeats images, the default keeps each once
            continue
        assert [paths[i] for i in picks[num_fp:]] == ref[c][num_fp:]


def test_duplicates_flag_reproduces_repeats_and_the_default_has_none():
    labels, _ = generated_split(0)
    seen = 0
    for seed in range(1, 30):
        dup = release_noise(labels, 0.75, 16, 7, seed, "sym", duplicates=True)
        seen += dup["repeats"]
        plain = release_noise(labels, 0.75, 16, 7, seed, "sym")
        assert plain["repeats"] == 0 and len(set(plain["index"].tolist())) == len(plain["index"])
    assert seen > 0  # random.choices repeats images within a class (and class 2's first half is short)


# ----------------------------------------------------------------------------- (b) invariants
@pytest.mark.parametrize("noise_type", ["sym", "pair"])
@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.75])
def test_invariants(noise_type, rate):
    K, C = 16, 7
    labels, _ = generated_split(5)
    if noise_type == "pair" and rate == 0.75:  # class 1 receives class 2's second half: 10 images
        with pytest.raises(NoiseError, match="class 1 needs 12, has 10"):
            release_noise(labels, rate, K, C, 4, noise_type)
        return
    out = release_noise(labels, rate, K, C, 4, noise_type)
    halves = {}
    for c in range(C):
        idx = np.flatnonzero(labels == c).tolist()
        cut = math.ceil(len(idx) / 2)
        halves[c] = (set(idx[:cut]), set(idx[cut:]))
    assert len(set(out["index"].tolist())) == len(out["index"])  # no duplicates by default
    for c, picks in out["picks"].items():
        n_first = len(halves[c][0])
        k = K if n_first >= K else n_first
        n_wrong = noisy_count(rate, K) if n_first >= K else noisy_count(rate, n_first)
        assert len(picks) == k
        wrong, clean = picks[:n_wrong], picks[n_wrong:]
        assert all(i in halves[c][0] for i in clean)
        assert all(labels[i] != c for i in wrong)
        assert all(i in halves[int(labels[i])][1] for i in wrong)  # from another class's second half
        if noise_type == "pair":  # class c receives images of class c + 1 (JoAPR's pairflip)
            assert all(labels[i] == (c + 1) % C for i in wrong)
    assert int(out["noisy"].sum()) == sum(
        noisy_count(rate, K if len(halves[c][0]) >= K else len(halves[c][0])) for c in range(C))
    assert (out["given"] == np.repeat(sorted(out["picks"]), [len(out["picks"][c]) for c in sorted(out["picks"])])).all()


def test_protocol_check_and_short_pool():
    check_protocol(0.5, "sym", "release")
    check_protocol(0.5, "pair", "release")
    with pytest.raises(NoiseError, match="release supports"):
        check_protocol(0.5, "confusion", "release")
    with pytest.raises(NoiseError, match="swap, flip, release"):
        check_protocol(0.5, "sym", "relase")
    labels = np.repeat(np.arange(3), [40, 12, 40])  # class 1's second half has 6: pair cannot give class 0 8
    with pytest.raises(NoiseError, match="class 0 needs 8, has 6"):
        release_noise(labels, 0.5, 16, 3, 1, "pair")
    with pytest.raises(NoiseError, match="NUM_SHOTS"):
        release_noise(labels, 0.5, 0, 3, 1, "sym")


def test_noisy_items_record_and_repeated_items():
    labels, paths = generated_split(1)
    pool = [SimpleNamespace(impath=str(p), label=int(y), classname="c{}".format(y)) for p, y in zip(paths, labels)]
    make = lambda p, y, c: SimpleNamespace(impath=p, label=y, classname=c)  # noqa: E731
    for dup in (False, True):
        items, true, rec = noisy_items([], pool, rate=0.5, noise_type="sym", mode="release", seed=3, num_classes=7,
                                       key="x", make_item=make, num_shots=16, duplicates=dup)
        ref = release_noise(labels, 0.5, 16, 7, 3, "sym", duplicates=dup)
        assert [it.impath for it in items] == [paths[i] for i in ref["index"]]
        assert [it.label for it in items] == ref["given"].tolist() and true == ref["true"].tolist()
        assert rec["mode"] == "release" and "release_noise" in rec["generator"]
        assert rec["release"] == {"num_fp": 8, "duplicates": dup, "repeated_picks": ref["repeats"]}
        assert "halves" in rec["rules"] and rec["num_noisy"] == int(ref["noisy"].sum())
        if dup:
            assert len({it.impath for it in items}) == len(items) - ref["repeats"]  # repeats are kept as items


# ----------------------------------------------------------------------------- (c) train.py
def test_train_py_release_mode_writes_noise_json(world, tmp_path):
    out = str(tmp_path / "run")
    run_py(train_args(world["data"], world["clip"], out, epochs=1, rate=0.5,
                      extra=["DATASET.NOISE.MODE", "release"]))
    noise = json.load(open(osp.join(out, "noise.json")))
    res = json.load(open(osp.join(out, "results.json")))
    assert noise["mode"] == "release" and "release_noise" in noise["generator"]
    assert noise["release"]["num_fp"] == 2 and noise["release"]["duplicates"] is False
    assert noise["num_samples"] == 24 and noise["num_noisy"] == 12
    assert all(v == {"shots": 4, "noisy": 2} for v in noise["per_class"].values())
    assert res["noise"]["mode"] == "release" and "release_noise" in res["noise"]["generator"]
    # the picks are release_noise's over the training split in split order
    split = json.load(open(osp.join(world["data"], "dtd", "split_zhou_DescribableTextures.json")))["train"]
    ref = release_noise([y for _, y, _ in split], 0.5, 4, 6, 1, "sym")
    assert [osp.basename(s["impath"]) for s in noise["samples"]] == [osp.basename(split[i][0]) for i in ref["index"]]


# ----------------------------------------------------------------------------- (d) main.sh
def test_main_sh_release_switch(fake):  # noqa: F811
    proc, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "gce"], SUMMARY="0", DRY_RUN="1",
                       RELEASE="1", SEEDS="")
    assert proc.returncode == 0, proc.stderr
    train = [c for c in calls if c[0] == "train.py"]
    assert [c[c.index("--seed") + 1] for c in train] == ["1", "2", "3", "4"]
    for c in train:
        opts = list(zip(c[::1], c[1::1]))
        assert ("DATASET.NOISE.MODE", "release") in opts and ("TRAINER.PTNL.GCE_Q", "0.5") in opts
        assert ("TRAINER.PTNL.SAVE_TEST_LOGITS", "True") in opts
    assert all("/sym-release-0.5/" in d for d in out_dir(calls))
    proc, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "gce"], SUMMARY="0", DRY_RUN="1")
    assert all("/sym-swap-0.5/" in d for d in out_dir(calls))  # the default protocol keeps its own folder
    assert all(("DATASET.NOISE.MODE", "swap") in list(zip(c, c[1:])) for c in calls if c[0] == "train.py")
    proc, calls = fake("scripts/ptnl/main.sh", ["dtd", "rn50", "0.5", "gce"], SUMMARY="0", DRY_RUN="1",
                       RELEASE="1", NOISE_MODE="flip")
    assert proc.returncode == 2 and "NOISE_MODE=flip contradicts" in proc.stderr and not calls
