"""One training-set path: the noise function returns one ``TrainingSet``; a PTNL dataset keeps it
and the trainer reads that very object; a foreign dataset (a CoOp fork's class) gets the same
function from the trainer, and nothing is written back into it; the training loader is built
once, over the training set's items. The trainers print nothing and reach the engine only
through ``ptnl.compat``."""
import ast
import os
import os.path as osp

import pytest

from conftest import REPO, SMALL_OPTS
from ptnl import compat
from ptnl.clip.templates import register_template
from ptnl.config import extend_cfg
from ptnl.data.splits import read_split_file
from ptnl.noise import TrainingSet

import datasets  # noqa: F401
import trainers.ptnl  # noqa: F401


class ForkTextures(compat.DatasetBase):
    """A CoOp fork's own dataset class: no PTNL base, no noise, 4 shots per class."""

    def __init__(self, cfg):
        folder = osp.join(cfg.DATASET.ROOT, "dtd")
        split = read_split_file(osp.join(folder, "split_zhou_DescribableTextures.json"))

        def items(rows):
            return [compat.Datum(impath=osp.join(folder, "images", p), label=int(y), classname=c) for p, y, c in rows]
        train, shots = [], {}
        for d in items(split["train"]):
            if shots.get(d.label, 0) < 4:
                shots[d.label] = shots.get(d.label, 0) + 1
                train.append(d)
        super().__init__(train_x=train, val=items(split["val"]), test=items(split["test"]))


if "ForkTextures" not in compat.DATASET_REGISTRY.registered_names():
    compat.DATASET_REGISTRY.register(ForkTextures)
    register_template("ForkTextures", "{} texture.")  # what a fork does for its own class


def build(world, tmp_path, dataset="DescribableTextures", opts=()):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join(REPO, "configs", "trainers", "PTNL", "rn50.yaml"))
    cfg.merge_from_list(["DATASET.ROOT", world["data"], "DATASET.NAME", dataset, "DATASET.NUM_SHOTS", 4, "SEED", 1,
                         "TRAINER.NAME", "PTNL", "MODEL.BACKBONE.NAME", world["clip"],
                         "OUTPUT_DIR", str(tmp_path / "out"), "DATASET.NOISE.RATE", 0.5] + SMALL_OPTS + list(opts))
    cfg.freeze()
    compat.set_random_seed(1)
    return compat.build_trainer(cfg)


def count_train_loaders(monkeypatch):
    """Counts the training loaders the engine's ``build_data_loader`` builds (is_train=True)."""
    calls = []
    original = compat.build_data_loader

    def counting(cfg, **kwargs):
        if kwargs.get("is_train"):
            calls.append(kwargs["data_source"])
        return original(cfg, **kwargs)
    monkeypatch.setattr(compat, "build_data_loader", counting)
    return calls


def test_ptnl_dataset_training_set_is_read_as_is_and_its_loader_built_once(world, tmp_path, monkeypatch):
    calls = count_train_loaders(monkeypatch)
    t = build(world, tmp_path, opts=["DATALOADER.RANDOMNESS", "coop"])
    ds = t.dm.dataset
    assert isinstance(ds.training_set, TrainingSet) and t.training is ds.training_set
    assert t.train_items is ds.training_set.items and ds.train_x is ds.training_set.items
    assert t.noise_record is ds.training_set.record and t.noise_record["num_noisy"] > 0
    assert t.true_label_of == {d.impath: y for d, y in zip(ds.train_x, ds.training_set.true_labels)}
    assert len(calls) == 1 and calls[0] is t.train_items  # DATALOADER.RANDOMNESS coop: Dassl's loader, once
    assert t.train_loader_x.dataset.data_source is t.train_items


def test_per_sample_randomness_builds_no_engine_training_loader(world, tmp_path, monkeypatch):
    """The default randomness: PTNL's loader only (Dassl's, built and then replaced, is gone)."""
    from ptnl.data.randomness import EpochSampler
    calls = count_train_loaders(monkeypatch)
    t = build(world, tmp_path, opts=["DATALOADER.RANDOMNESS", "per_sample"])
    assert calls == [] and isinstance(t.train_loader_x.sampler, EpochSampler)
    assert t.train_loader_x.dataset.data_source is t.train_items


def test_foreign_dataset_gets_the_same_noise_function_and_is_left_alone(world, tmp_path, monkeypatch):
    calls = count_train_loaders(monkeypatch)
    t = build(world, tmp_path, dataset="ForkTextures", opts=["DATASET.NOISE.MODE", "flip",
                                                             "DATALOADER.RANDOMNESS", "coop"])
    ds = t.dm.dataset
    clean = [(d.impath, d.label) for d in ds.train_x]
    rec = t.noise_record
    assert rec["mode"] == "flip" and rec["num_noisy"] == round(0.5 * len(clean))  # 12 of 24 relabelled
    assert [(d.impath, d.label) for d in ds.train_x] == clean  # nothing written back into the fork's dataset
    given = [(d.impath, d.label) for d in t.train_items]
    assert [p for p, _ in given] == [p for p, _ in clean] and given != clean
    assert [t.true_label_of[p] for p, _ in given] == [y for _, y in clean]
    assert len(calls) == 1 and calls[0] is t.train_items


def test_foreign_dataset_swap_noise_names_the_missing_pool(world, tmp_path):
    from ptnl.noise import NoiseError
    with pytest.raises(NoiseError, match="full training split"):
        build(world, tmp_path, dataset="ForkTextures")  # DATASET.NOISE.MODE swap (default) needs the pool


def _calls_and_imports(path):
    tree = ast.parse(open(path).read(), path)
    prints = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
    engine = [n.lineno for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and any(
        (name or "").startswith("ptnl.engine") for name in
        ([a.name for a in n.names] if isinstance(n, ast.Import) else [n.module]))]
    return prints, engine


def test_trainers_print_nothing_and_reach_the_engine_only_through_compat():
    folder = osp.join(REPO, "ptnl", "trainers")
    found = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            if f.endswith(".py"):
                prints, engine = _calls_and_imports(osp.join(dirpath, f))
                if prints or engine:
                    found[osp.relpath(osp.join(dirpath, f), REPO)] = {"print": prints, "ptnl.engine": engine}
    assert found == {}, found
