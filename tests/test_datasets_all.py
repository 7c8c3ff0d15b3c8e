"""The ten other CoOp datasets, each read through its class from a small on-disk copy of its real
layout: the raw files (so the split generator runs), a hand-written split_zhou_*.json (so the
split-file path runs), class-name clean-ups, split sizes, and the few-shot cache."""
import io
import json
import os
import os.path as osp
import pickle
import random

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from conftest import coop_pickle
from ptnl import compat
from ptnl.config import extend_cfg
from ptnl.data.base import DatasetError

import datasets  # noqa: F401  (registers every dataset)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

_JPEG = []


def write_images(paths):
    """Write a tiny 8x8 JPEG (made once with PIL) at each path, creating folders."""
    if not _JPEG:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (120, 60, 30)).save(buf, format="JPEG")
        _JPEG.append(buf.getvalue())
    for p in paths:
        os.makedirs(osp.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(_JPEG[0])


def write_text(path, lines, newline="\n"):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write("".join(line + newline for line in lines))


def make_cfg(root, name, shots=-1, seed=1):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["DATASET.ROOT", str(root), "DATASET.NAME", name, "DATASET.NUM_SHOTS", shots,
                         "SEED", seed])
    return cfg


def build(root, name, shots=-1, seed=1):
    cfg = make_cfg(root, name, shots, seed)
    random.seed(cfg.SEED)
    return compat.DATASET_REGISTRY.get(name)(cfg)


def ddir(root, name):
    return osp.join(str(root), compat.DATASET_REGISTRY.get(name).dataset_dir)


# ---------------------------------------------------------------------------------------------
# Raw layouts. Each maker writes the dataset's raw files under root and returns what the reader
# must produce: class names by label and (train, val, test) sizes.

def make_caltech101(root):
    img = osp.join(root, "caltech-101", "101_ObjectCategories")
    folders = {"BACKGROUND_Google": 3, "Faces_easy": 3, "Faces": 10, "Leopards": 10, "Motorbikes": 10,
               "accordion": 10, "airplanes": 10, "car_side": 10}
    write_images([osp.join(img, f, "image_{:04d}.jpg".format(i + 1)) for f, n in folders.items() for i in range(n)])
    return ["face", "leopard", "motorbike", "accordion", "airplane", "car_side"], (30, 12, 18)


def make_food101(root):
    ddir_ = osp.join(root, "food-101")
    write_images([osp.join(ddir_, "images", c, "{}.jpg".format(100 + i))
                  for c in ("beef_carpaccio", "apple_pie", "baby_back_ribs") for i in range(10)])
    write_text(osp.join(ddir_, "meta", "train.txt"), ["apple_pie/100"])  # official lists: not used
    return ["apple_pie", "baby_back_ribs", "beef_carpaccio"], (15, 6, 9)


EUROSAT = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
           "PermanentCrop", "Residential", "River", "SeaLake"]
EUROSAT_NAMES = ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road",
                 "Industrial Buildings", "Pasture Land", "Permanent Crop Land", "Residential Buildings",
                 "River", "Sea or Lake"]


def make_eurosat(root):
    img = osp.join(root, "eurosat", "2750")
    write_images([osp.join(img, f, "{}_{}.jpg".format(f, i + 1)) for f in EUROSAT for i in range(5)])
    return EUROSAT_NAMES, (20, 10, 20)  # 5 per class: round(2.5) = 2 train, 1 val, 2 test


PETS = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("american_pit_bull_terrier", 3, 2)]


def make_oxford_pets(root):
    d = osp.join(root, "oxford_pets")
    trainval, test = [], []
    for breed, cid, species in PETS:
        for i in range(8):
            stem = "{}_{}".format(breed, 100 + i)
            (trainval if i < 5 else test).append("{} {} {} {}".format(stem, cid, species, i + 1))
            write_images([osp.join(d, "images", stem + ".jpg")])
    write_text(osp.join(d, "annotations", "trainval.txt"), trainval)
    write_text(osp.join(d, "annotations", "test.txt"), test)
    return ["abyssinian", "american_bulldog", "american_pit_bull_terrier"], (12, 3, 9)


CARS = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "BMW M3 Coupe 2012"]


def _cars_annos(labels):
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    annos = np.zeros((1, len(labels)), dtype=[(f, "O") for f in fields])
    for i, y in enumerate(labels):
        box = np.array([[10]], dtype=np.uint16)
        annos[0, i] = (box, box, box, box, np.array([[y]], dtype=np.uint8), np.array(["{:05d}.jpg".format(i + 1)]))
    return annos


def make_stanford_cars(root):
    d = osp.join(root, "stanford_cars")
    train_labels = [1, 2, 3] * 5  # interleaved: groups form in order of first appearance
    test_labels = [3, 1, 2] * 2
    write_images([osp.join(d, "cars_train", "{:05d}.jpg".format(i + 1)) for i in range(len(train_labels))])
    write_images([osp.join(d, "cars_test", "{:05d}.jpg".format(i + 1)) for i in range(len(test_labels))])
    os.makedirs(osp.join(d, "devkit"))
    names = np.empty((1, len(CARS)), dtype=object)
    for i, n in enumerate(CARS):
        names[0, i] = np.array([n])
    savemat(osp.join(d, "devkit", "cars_meta.mat"), {"class_names": names})
    savemat(osp.join(d, "devkit", "cars_train_annos.mat"), {"annotations": _cars_annos(train_labels)})
    savemat(osp.join(d, "cars_test_annos_withlabels.mat"), {"annotations": _cars_annos(test_labels)})
    return ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 BMW M3 Coupe"], (12, 3, 6)


FLOWER_LABELS = [2, 1, 3] * 10  # image i (1-based) has class FLOWER_LABELS[i - 1]


def make_oxford_flowers(root):
    d = osp.join(root, "oxford_flowers")
    write_images([osp.join(d, "jpg", "image_{:05d}.jpg".format(i + 1)) for i in range(len(FLOWER_LABELS))])
    savemat(osp.join(d, "imagelabels.mat"), {"labels": np.array([FLOWER_LABELS], dtype=np.float64)})
    with open(osp.join(d, "cat_to_name.json"), "w") as f:
        json.dump({"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells"}, f)
    return ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"], (15, 6, 9)


VARIANTS = ["707-320", "F/A-18", "Cessna 172"]  # file order, not sorted


def make_fgvc_aircraft(root):
    d = osp.join(root, "fgvc_aircraft")
    write_text(osp.join(d, "variants.txt"), VARIANTS)
    n = 1000000
    for split, per in (("train", 4), ("val", 2), ("test", 2)):
        lines = []
        for v in VARIANTS:
            for _ in range(per):
                n += 1
                lines.append("{:07d} {}".format(n, v))
                write_images([osp.join(d, "images", "{:07d}.jpg".format(n))])
        write_text(osp.join(d, "images_variant_{}.txt".format(split)), lines)
    return list(VARIANTS), (12, 6, 6)


SUN = ["/a/abbey", "/a/apartment_building/outdoor", "/b/bakery/shop"]


def make_sun397(root):
    d = osp.join(root, "sun397")
    write_text(osp.join(d, "ClassName.txt"), SUN)
    for fname, per, start in (("Training_01.txt", 5, 0), ("Testing_01.txt", 3, 50)):
        lines = ["{}/sun_{:04d}.jpg".format(c, start + i) for c in SUN for i in range(per)]
        write_text(osp.join(d, fname), lines)
        write_images([osp.join(d, "SUN397", line[1:]) for line in lines])
    write_text(osp.join(d, "Training_02.txt"), ["/a/abbey/not_used.jpg"])  # only partition 01 is read
    return ["abbey", "outdoor apartment_building", "shop bakery"], (12, 3, 9)


UCF = ["ApplyEyeMakeup", "Archery", "YoYo"]


def make_ucf101(root):
    d = osp.join(root, "ucf101")
    lists = osp.join(d, "ucfTrainTestlist")
    write_text(osp.join(lists, "classInd.txt"), ["{} {}".format(i + 1, a) for i, a in enumerate(UCF)], "\r\n")
    train, test = [], []
    for k, action in enumerate(UCF):
        words = {"ApplyEyeMakeup": "Apply_Eye_Makeup", "Archery": "Archery", "YoYo": "Yo_Yo"}[action]
        for g in range(8):
            video = "v_{}_g{:02d}_c01".format(action, g + 1)
            if g < 5:
                train.append("{}/{}.avi {}".format(action, video, k + 1))
            else:
                test.append("{}/{}.avi".format(action, video))
            write_images([osp.join(d, "UCF-101-midframes", words, video + ".jpg")])
    write_text(osp.join(lists, "trainlist01.txt"), train, "\r\n")
    write_text(osp.join(lists, "testlist01.txt"), test, "\r\n")
    return ["Apply_Eye_Makeup", "Archery", "Yo_Yo"], (12, 3, 9)


IMAGENET = {"n01440764": "tench", "n01443537": "goldfish", "n01484850": "great white shark",
            "n01491361": "tiger shark"}


def make_imagenet(root):
    d = osp.join(root, "imagenet")
    # classnames.txt is only a lookup: its order (and an extra wnid) does not set labels
    write_text(osp.join(d, "classnames.txt"), ["n01491361 tiger shark", "n01440764 tench", "n09999999 extra",
                                               "n01484850 great white shark", "n01443537 goldfish"])
    for split, per in (("train", 6), ("val", 2)):
        write_images([osp.join(d, "images", split, w, "{}_{}.JPEG".format(w, i)) for w in IMAGENET for i in range(per)])
    write_text(osp.join(d, "images", "train", "README.txt"), ["files beside the wnid folders are skipped"])
    write_text(osp.join(d, "images", "val", "new_val_prep.sh"), ["echo"])
    return [IMAGENET[w] for w in sorted(IMAGENET)], (24, 8, 8)  # val is the test list


MAKERS = {
    "Caltech101": make_caltech101, "Food101": make_food101, "EuroSAT": make_eurosat,
    "OxfordPets": make_oxford_pets, "StanfordCars": make_stanford_cars,
    "OxfordFlowers": make_oxford_flowers, "FGVCAircraft": make_fgvc_aircraft, "SUN397": make_sun397,
    "UCF101": make_ucf101, "ImageNet": make_imagenet,
}
ALL = list(MAKERS)
WITH_SPLIT_FILE = [n for n in ALL if n not in ("FGVCAircraft", "ImageNet")]

TEMPLATES = {
    "ImageNet": "a photo of a {}.", "Caltech101": "a photo of a {}.",
    "OxfordPets": "a photo of a {}, a type of pet.", "StanfordCars": "a photo of a {}.",
    "OxfordFlowers": "a photo of a {}, a type of flower.", "Food101": "a photo of {}, a type of food.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.", "SUN397": "a photo of a {}.",
    "EuroSAT": "a centered satellite photo of {}.", "UCF101": "a photo of a person doing {}.",
}
CONFIG_KEYS = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "OxfordFlowers", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "eurosat": "EuroSAT", "ucf101": "UCF101",
}


def image_folder(root, name):
    cls = compat.DATASET_REGISTRY.get(name)
    return osp.join(str(root), cls.dataset_dir, cls.image_dir)


def rel_paths(ds_items, root, name):
    return [osp.relpath(d.impath, image_folder(root, name)).replace(os.sep, "/") for d in ds_items]


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_generated_from_raw_files(name, tmp_path):
    names, (n_train, n_val, n_test) = MAKERS[name](str(tmp_path))
    ds = build(tmp_path, name)
    assert ds.classnames == names
    assert ds.num_classes == len(names)
    assert (len(ds.full_train), len(ds.val), len(ds.test)) == (n_train, n_val, n_test)
    assert len(ds.train_x) == n_train  # NUM_SHOTS -1: the whole split
    assert ds.template == TEMPLATES[name]
    assert all(osp.isabs(d.impath) and osp.isfile(d.impath) for d in ds.full_train + ds.val + ds.test)
    for d in ds.full_train + ds.val + ds.test:
        assert ds.classnames[d.label] == d.classname and d.domain == 0
    assert {d.label for d in ds.test} == set(range(len(names)))
    if name in WITH_SPLIT_FILE:
        cls = compat.DATASET_REGISTRY.get(name)
        split_path = osp.join(ddir(tmp_path, name), cls.split_file)
        split = json.load(open(split_path))
        assert set(split) == {"train", "val", "test"}
        assert [len(split[k]) for k in ("train", "val", "test")] == [n_train, n_val, n_test]
        assert split["train"] == [[r, d.label, d.classname] for r, d in
                                  zip(rel_paths(ds.full_train, tmp_path, name), ds.full_train)]
        again = build(tmp_path, name, seed=99)  # now read from the split file, whatever the seed
        for a, b in ((ds.full_train, again.full_train), (ds.val, again.val), (ds.test, again.test)):
            assert [(d.impath, d.label, d.classname) for d in a] == [(d.impath, d.label, d.classname) for d in b]
    else:
        assert not [f for f in os.listdir(ddir(tmp_path, name)) if f.startswith("split_zhou")]


def _expected_cache(name, shots, seed):
    return "shot_{}-seed_{}.{}".format(shots, seed, "pkl" if compat.ENGINE == "dassl" else "ptnl.json")


@pytest.mark.parametrize("name", ALL)
def test_fewshot_cache_written_and_reused(name, tmp_path, capsys):
    MAKERS[name](str(tmp_path))
    first = build(tmp_path, name, shots=2, seed=1)
    cache_dir = osp.join(ddir(tmp_path, name), "split_fewshot")
    assert os.listdir(cache_dir) == [_expected_cache(name, 2, 1)]
    assert len(first.train_x) == 2 * first.num_classes
    assert {d.label for d in first.train_x} == set(range(first.num_classes))
    full_val = build(tmp_path, name).val
    if name == "ImageNet":  # no few-shot val: val is the whole test list
        assert [d.impath for d in first.val] == [d.impath for d in first.test] == [d.impath for d in full_val]
    else:
        per_class = {}
        for d in full_val:
            per_class[d.label] = per_class.get(d.label, 0) + 1
        assert len(first.val) == sum(min(2, n) for n in per_class.values())
    capsys.readouterr()
    random.seed(12345)  # a different random state: the cache, not the RNG, decides
    second = compat.DATASET_REGISTRY.get(name)(make_cfg(tmp_path, name, shots=2, seed=1))
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out
    assert [d.impath for d in second.train_x] == [d.impath for d in first.train_x]
    assert [d.label for d in second.train_x] == [d.label for d in first.train_x]
    assert [d.impath for d in second.val] == [d.impath for d in first.val]
    assert second.classnames == first.classnames


# Hand-written split files: the reader takes paths, labels and names from the file (no raw
# annotation file is on disk) and joins the paths onto the image folder.
SPLIT_SAMPLES = {
    "Caltech101": (lambda y, n: ["Faces", "accordion"][y] + "/image_{:04d}.jpg".format(n), ["face", "accordion"]),
    "OxfordPets": (lambda y, n: ["Abyssinian", "american_bulldog"][y] + "_{}.jpg".format(n),
                   ["abyssinian", "american_bulldog"]),
    "StanfordCars": (lambda y, n: ("cars_test" if n >= 6 else "cars_train") + "/{:05d}.jpg".format(10 * y + n),
                     ["2000 AM General Hummer SUV", "2012 Acura RL Sedan"]),
    "OxfordFlowers": (lambda y, n: "image_{:05d}.jpg".format(10 * y + n + 1), ["pink primrose", "globe thistle"]),
    "Food101": (lambda y, n: ["apple_pie", "baby_back_ribs"][y] + "/{}.jpg".format(1000 + n),
                ["apple_pie", "baby_back_ribs"]),
    "SUN397": (lambda y, n: ["a/abbey", "a/apartment_building/outdoor"][y] + "/sun_{}.jpg".format(n),
               ["abbey", "outdoor apartment_building"]),
    "EuroSAT": (lambda y, n: ["AnnualCrop", "Forest"][y] + "/{}_{}.jpg".format(["AnnualCrop", "Forest"][y], n),
                ["Annual Crop Land", "Forest"]),
    "UCF101": (lambda y, n: ["Apply_Eye_Makeup", "Yo_Yo"][y] + "/v_{}_g{:02d}_c01.jpg".format(
        ["ApplyEyeMakeup", "YoYo"][y], n), ["Apply_Eye_Makeup", "Yo_Yo"]),
}


@pytest.mark.parametrize("name", WITH_SPLIT_FILE)
def test_reads_split_file(name, tmp_path):
    rel, names = SPLIT_SAMPLES[name]
    cls = compat.DATASET_REGISTRY.get(name)
    split = {"train": [], "val": [], "test": []}
    for y, cname in enumerate(names):
        for n in range(8):
            part = "train" if n < 4 else "val" if n < 6 else "test"
            split[part].append([rel(y, n), y, cname])
    folder = image_folder(tmp_path, name)
    write_images([osp.join(folder, r) for part in split.values() for r, _, _ in part])
    with open(osp.join(ddir(tmp_path, name), cls.split_file), "w") as f:
        json.dump(split, f, indent=4)
    ds = build(tmp_path, name, shots=-1)
    assert ds.classnames == names and ds.num_classes == 2
    for key, items in (("train", ds.train_x), ("val", ds.val), ("test", ds.test)):
        assert [(osp.join(folder, r), y, c) for r, y, c in split[key]] == \
               [(d.impath, d.label, d.classname) for d in items]
    if name == "StanfordCars":  # paths relative to the dataset folder itself
        assert ds.test[0].impath == osp.join(ddir(tmp_path, name), "cars_test", "00006.jpg")


# ---------------------------------------------------------------------------------------------
# Dataset-specific rules

def test_caltech_ignores_and_renames_folders(tmp_path):
    make_caltech101(str(tmp_path))
    ds = build(tmp_path, "Caltech101")
    assert not any("BACKGROUND_Google" in d.impath or "Faces_easy" in d.impath for d in ds.full_train + ds.test)
    split = json.load(open(osp.join(ddir(tmp_path, "Caltech101"), "split_zhou_Caltech101.json")))
    assert split["train"][0][0].startswith("Faces/") and split["train"][0][1:] == [0, "face"]
    assert {tuple(x[1:]) for x in split["test"] if x[0].startswith("airplanes/")} == {(4, "airplane")}


def test_eurosat_paths_keep_folder_names(tmp_path):
    make_eurosat(str(tmp_path))
    build(tmp_path, "EuroSAT")
    split = json.load(open(osp.join(ddir(tmp_path, "EuroSAT"), "split_zhou_EuroSAT.json")))
    first = split["train"][0]
    assert first[0].startswith("AnnualCrop/AnnualCrop_") and first[1:] == [0, "Annual Crop Land"]
    assert {x[2] for x in split["val"] if x[0].startswith("SeaLake/")} == {"Sea or Lake"}


def test_pets_carve_out_follows_python_random(tmp_path):
    make_oxford_pets(str(tmp_path))
    ds = build(tmp_path, "OxfordPets", seed=7)
    random.seed(7)  # the Pets rule: per class (first-appearance order) shuffle indices, first 20% -> val
    expected_val, expected_train = [], []
    for k, (breed, _, _) in enumerate(PETS):
        idxs = list(range(5))
        n_val = round(5 * 0.2)
        random.shuffle(idxs)
        stems = ["{}_{}.jpg".format(breed, 100 + i) for i in idxs]
        expected_val += stems[:n_val]
        expected_train += stems[n_val:]
    assert rel_paths(ds.val, tmp_path, "OxfordPets") == expected_val
    assert rel_paths(ds.full_train, tmp_path, "OxfordPets") == expected_train
    assert rel_paths(ds.test, tmp_path, "OxfordPets")[:2] == ["Abyssinian_105.jpg", "Abyssinian_106.jpg"]


def test_cars_split_paths_relative_to_dataset_folder(tmp_path):
    make_stanford_cars(str(tmp_path))
    ds = build(tmp_path, "StanfordCars")
    split = json.load(open(osp.join(ddir(tmp_path, "StanfordCars"), "split_zhou_StanfordCars.json")))
    assert all(x[0].startswith("cars_train/") for x in split["train"] + split["val"])
    assert all(x[0].startswith("cars_test/") for x in split["test"])
    assert split["test"][0] == ["cars_test/00001.jpg", 2, "2012 BMW M3 Coupe"]
    assert [d.label for d in ds.full_train] == [0] * 4 + [1] * 4 + [2] * 4


def test_flowers_groups_by_first_appearance(tmp_path):
    make_oxford_flowers(str(tmp_path))
    ds = build(tmp_path, "OxfordFlowers")
    assert [d.label for d in ds.full_train] == [1] * 5 + [0] * 5 + [2] * 5  # class 2 appears first
    for d in ds.full_train + ds.val + ds.test:
        index = int(osp.basename(d.impath)[len("image_"):-len(".jpg")])
        assert d.label == FLOWER_LABELS[index - 1] - 1


def test_aircraft_reads_official_lists_every_time(tmp_path):
    make_fgvc_aircraft(str(tmp_path))
    ds = build(tmp_path, "FGVCAircraft")
    assert [d.label for d in ds.val] == [0, 0, 1, 1, 2, 2]
    assert ds.classnames[1] == "F/A-18"
    d = osp.join(ddir(tmp_path, "FGVCAircraft"))
    with open(osp.join(d, "images_variant_val.txt"), "a") as f:  # edits show up at once: no cached split
        f.write("1000003 Cessna 172\n")
    assert len(build(tmp_path, "FGVCAircraft").val) == 7
    os.remove(osp.join(d, "variants.txt"))
    with pytest.raises(DatasetError, match="variants.txt"):
        build(tmp_path, "FGVCAircraft")


def test_imagenet_preprocessed_cache(tmp_path, capsys):
    make_imagenet(str(tmp_path))
    d = ddir(tmp_path, "ImageNet")
    first = build(tmp_path, "ImageNet")
    own = "preprocessed.pkl" if compat.ENGINE == "dassl" else "preprocessed.ptnl.json"
    assert osp.isfile(osp.join(d, own))
    assert not any(f.startswith(".tmp-") for f in os.listdir(d))  # written atomically
    if compat.ENGINE != "dassl":
        assert not osp.exists(osp.join(d, "preprocessed.pkl"))  # never a pickle Dassl would misread
    labels = {osp.basename(osp.dirname(x.impath)): x.label for x in first.full_train}
    assert labels == {w: i for i, w in enumerate(sorted(IMAGENET))}
    # later runs load the cache without walking the folders: a new image is not seen
    write_images([osp.join(d, "images", "train", "n01440764", "new.JPEG")])
    capsys.readouterr()
    second = build(tmp_path, "ImageNet")
    assert "Loading preprocessed data" in capsys.readouterr().out
    assert [(x.impath, x.label, x.classname) for x in second.full_train] == \
           [(x.impath, x.label, x.classname) for x in first.full_train]
    assert [x.impath for x in second.val] == [x.impath for x in second.test] == [x.impath for x in first.test]


def test_imagenet_reads_coop_preprocessed_pickle(tmp_path, monkeypatch):
    make_imagenet(str(tmp_path))
    ds = build(tmp_path, "ImageNet")
    d = ddir(tmp_path, "ImageNet")
    for f in ("preprocessed.pkl", "preprocessed.ptnl.json"):
        if osp.exists(osp.join(d, f)):
            os.remove(osp.join(d, f))
    picked = {"train": ds.full_train[::2], "test": ds.test[:3]}  # not what a walk would give
    with open(osp.join(d, "preprocessed.pkl"), "wb") as f:
        f.write(coop_pickle(picked, monkeypatch))
    loaded = build(tmp_path, "ImageNet")
    assert [x.impath for x in loaded.full_train] == [x.impath for x in picked["train"]]
    assert [x.impath for x in loaded.test] == [x.impath for x in loaded.val] == [x.impath for x in picked["test"]]
    assert isinstance(loaded.full_train[0], compat.Datum)


def test_imagenet_fewshot_cache_holds_train_only(tmp_path):
    make_imagenet(str(tmp_path))
    build(tmp_path, "ImageNet", shots=2, seed=3)
    path = osp.join(ddir(tmp_path, "ImageNet"), "split_fewshot", _expected_cache("ImageNet", 2, 3))
    if compat.ENGINE == "dassl":
        data = pickle.load(open(path, "rb"))
    else:
        data = json.load(open(path))
    assert set(data) == {"train"} and len(data["train"]) == 8


def test_imagenet_train_and_val_must_hold_same_wnids(tmp_path):
    make_imagenet(str(tmp_path))
    write_images([osp.join(ddir(tmp_path, "ImageNet"), "images", "val", "n09999999", "x.JPEG")])
    with pytest.raises(DatasetError, match="n09999999"):
        build(tmp_path, "ImageNet")


def test_imagenet_wnid_missing_from_classnames(tmp_path):
    make_imagenet(str(tmp_path))
    write_text(osp.join(ddir(tmp_path, "ImageNet"), "classnames.txt"), ["n01440764 tench"])
    with pytest.raises(DatasetError, match="classnames.txt"):
        build(tmp_path, "ImageNet")


# ---------------------------------------------------------------------------------------------
# Errors name what was expected

@pytest.mark.parametrize("name", ALL)
def test_missing_dataset_folder_named(name, tmp_path):
    with pytest.raises(DatasetError) as e:
        build(tmp_path / "nowhere", name)
    msg = str(e.value)
    assert ddir(tmp_path / "nowhere", name) in msg
    cls = compat.DATASET_REGISTRY.get(name)
    assert (cls.split_file or {"FGVCAircraft": "variants.txt", "ImageNet": "classnames.txt"}[name]) in msg


@pytest.mark.parametrize("name, missing", [
    ("OxfordPets", osp.join("annotations", "trainval.txt")),
    ("StanfordCars", osp.join("devkit", "cars_meta.mat")),
    ("OxfordFlowers", "imagelabels.mat"),
    ("SUN397", "ClassName.txt"),
    ("UCF101", osp.join("ucfTrainTestlist", "classInd.txt")),
    ("Food101", "images"),
    ("ImageNet", "classnames.txt"),
])
def test_missing_raw_file_named(name, missing, tmp_path):
    os.makedirs(ddir(tmp_path, name))
    with pytest.raises(DatasetError) as e:
        build(tmp_path, name)
    msg = str(e.value)
    assert osp.join(ddir(tmp_path, name), missing) in msg
    split_file = compat.DATASET_REGISTRY.get(name).split_file
    if split_file:
        assert split_file in msg


def test_missing_image_named(tmp_path):
    make_ucf101(str(tmp_path))
    gone = osp.join(ddir(tmp_path, "UCF101"), "UCF-101-midframes", "Yo_Yo", "v_YoYo_g02_c01.jpg")
    os.remove(gone)
    with pytest.raises(DatasetError, match="trainlist01.txt") as e:
        build(tmp_path, "UCF101")
    assert gone in str(e.value)


def test_config_files_name_registered_datasets():
    import yaml
    for key, name in CONFIG_KEYS.items():
        with open(osp.join(REPO, "configs", "datasets", key + ".yaml")) as f:
            assert yaml.safe_load(f) == {"DATASET": {"NAME": name}}
        assert compat.DATASET_REGISTRY.get(name).__name__ == name
