"""The ViT pocket world (``MODEL.BACKBONE.NAME pocket-vit``): the shipped pocket text tower with a
small ``clip.model.VisionTransformer`` image tower pretrained against it (``pocket-vit.pt``, fp16,
only the image tower, its record in ``pocket-vit.json``), for the learners that prompt a ViT's
blocks (MaPLe, PromptSRC). The full CLIP is written once into the cache from the two shipped
files; the dataset is the pocket world's (``tests/test_pocket.py``).

``PTNL_TEST_POCKET_CACHE=<folder>`` builds the world there instead of a temporary folder, or reuses
the world found there.
"""
import json
import os
import os.path as osp
import shutil

import pytest
import torch

from conftest import run_py

POCKET_OPTS = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "200"]


@pytest.fixture(scope="session")
def vit_world(tmp_path_factory):
    from ptnl.pocket import build_vit
    cache = os.environ.get("PTNL_TEST_POCKET_CACHE") or str(tmp_path_factory.mktemp("pocket-cache"))
    world = build_vit(cache)
    world["cache"] = cache
    return world


def test_vit_weights_are_the_recorded_ones_and_load_into_a_real_vit_clip(vit_world, monkeypatch):
    from clip.model import CLIP, VisionTransformer
    from ptnl.clip.preprocess import input_resolution
    from ptnl.clip.weights import file_digest, load_clip, read_state_dict
    from ptnl.pocket import SHIPPED_VIT_WEIGHTS, SHIPPED_WEIGHTS, build, shipped
    record = shipped(vit=True)
    assert file_digest(SHIPPED_VIT_WEIGHTS) == record["weights_sha256"]
    assert record["text_weights_sha256"] == shipped()["weights_sha256"]  # trained against the shipped text tower
    assert osp.getsize(SHIPPED_VIT_WEIGHTS) == record["weights_bytes"] < 1.5e6
    monkeypatch.setenv("PTNL_CACHE_DIR", vit_world["cache"])
    model = load_clip("pocket-vit")  # by name, through the normal loader
    assert model.weights_path == vit_world["weights"]
    assert type(model) is CLIP and type(model.visual) is VisionTransformer
    assert model.visual.input_resolution == record["resolution"] == input_resolution("pocket-vit") == 64
    assert len(model.visual.transformer.resblocks) == record["architecture"]["vision_layers"]
    sd = model.state_dict()
    visual = torch.load(SHIPPED_VIT_WEIGHTS, map_location="cpu", weights_only=True)
    assert visual and all(k.startswith("visual.") for k in visual)
    text = {k: v for k, v in read_state_dict(SHIPPED_WEIGHTS).items() if not k.startswith("visual.")}
    assert set(sd) == set(visual) | set(text)
    for k, v in list(visual.items()) + list(text.items()):
        assert torch.equal(sd[k], v.to(sd[k].dtype)), k  # the shipped fp16 values, exactly
    assert vit_world["root"] == build(vit_world["cache"])["root"]  # the pocket world's dataset


def test_vit_zero_shot_accuracy_is_the_recorded_one(vit_world):
    from ptnl.clip.weights import load_clip
    from ptnl.pocket import shipped, zero_shot_accuracy
    record = shipped(vit=True)
    acc = 100.0 * zero_shot_accuracy(load_clip(vit_world["weights"]), vit_world["root"])
    assert acc == record["zero_shot_accuracy"] == vit_world["zero_shot_accuracy"]
    assert acc > 3 * record["chance"], acc


def vit_probe(cache):
    """The ViT world's zero-shot accuracy (percent) in ``cache`` and the CPU capability, for
    ``test_vit_world_is_the_same_under_every_cpu_capability`` (one subprocess per capability)."""
    from ptnl.clip.weights import load_clip
    from ptnl.pocket import build_vit, zero_shot_accuracy
    world = build_vit(cache)
    return {"capability": torch.backends.cpu.get_cpu_capability(),
            "zero_shot": 100.0 * zero_shot_accuracy(load_clip(world["weights"]), world["root"])}


def test_vit_world_is_the_same_under_every_cpu_capability(vit_world):
    """fp16 shipped weights, images fixed: the zero-shot figure is the record's to the digit under
    every capability this CPU offers (measured: identical under default and avx2)."""
    from ptnl.pocket import shipped
    here = vit_probe(vit_world["cache"])
    caps = ["default", "avx2"] + (["avx512"] if here["capability"] == "AVX512" else [])
    code = ("import json, sys; sys.path.insert(0, 'tests'); from test_pocket_vit import vit_probe; "
            "print(json.dumps(vit_probe(sys.argv[1])))")
    for cap in caps:
        proc = run_py(["-c", code, vit_world["cache"]], env={"ATEN_CPU_CAPABILITY": cap})
        there = json.loads(proc.stdout.strip().splitlines()[-1])
        assert there["capability"].lower() == cap, there
        assert there["zero_shot"] == here["zero_shot"] == shipped(vit=True)["zero_shot_accuracy"], (cap, there)


def test_fields_name_the_vit_weights_and_the_shared_dataset(vit_world):
    proc = run_py(["-m", "ptnl.pocket", "--vit", "--cache", vit_world["cache"], "--field", "weights", "root",
                   "resolution", "zero_shot_accuracy"])
    weights, root, res, acc = proc.stdout.strip().splitlines()[-4:]
    assert (weights, root, int(res)) == (vit_world["weights"], vit_world["root"], 64)
    assert float(acc) == vit_world["zero_shot_accuracy"]


def test_changed_vit_weights_are_refused_and_a_changed_cache_file_is_rewritten(vit_world, tmp_path):
    import ptnl.pocket as pocket
    copy = str(tmp_path / "pocket-vit.pt")
    shutil.copyfile(pocket.SHIPPED_VIT_WEIGHTS, copy)
    pocket.check_weights(copy, vit=True)
    with open(copy, "ab") as f:
        f.write(b"\0")
    with pytest.raises(pocket.PocketWorldError, match="reinstall"):
        pocket.check_weights(copy, vit=True)
    with pytest.raises(pocket.PocketWorldError, match="not a pocket ViT image tower"):
        pocket.vit_clip(pocket.SHIPPED_WEIGHTS, str(tmp_path / "clip.pt"))  # a whole CLIP, not an image tower
    cache = str(tmp_path / "cache")
    shutil.copytree(osp.dirname(vit_world["root"]), osp.join(pocket.world_dir(cache)))  # the dataset, not regenerated
    first = pocket.build_vit(cache)
    assert first["built_now"] and not pocket.build_vit(cache)["built_now"]
    with open(first["weights"], "ab") as f:
        f.write(b"\0")
    again = pocket.build_vit(cache)
    assert again["built_now"] and again["zero_shot_accuracy"] == first["zero_shot_accuracy"]


def test_vit_rebuild_pretrains_only_the_image_tower(tmp_path):
    """``--rebuild --vit`` is the real recipe (here cut to 2 steps): only the image tower is written,
    next to a record that names the text tower it was trained against."""
    from ptnl.clip.weights import load_clip
    from ptnl.pocket import shipped
    out = str(tmp_path / "rebuilt")
    proc = run_py(["-m", "ptnl.pocket", "--rebuild", "--vit", "--steps", "2", "--out", out], check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "shipped {:.2f}%".format(shipped(vit=True)["zero_shot_accuracy"]) in proc.stdout
    with open(osp.join(out, "pocket-vit.json")) as f:
        record = json.load(f)
    assert record["pretraining"]["steps"] == 2 and record["architecture"] == shipped(vit=True)["architecture"]
    assert record["text_weights_sha256"] == shipped()["weights_sha256"]
    visual = torch.load(osp.join(out, "pocket-vit.pt"), weights_only=True)
    assert all(k.startswith("visual.") for k in visual) and all(v.dtype == torch.float16 for v in visual.values())
    assert load_clip(osp.join(out, "pocket-vit-clip.pt")).visual.input_resolution == 64


def _train(world, out, trainer, config, extra=()):
    args = ["train.py", "--root", world["root"], "--trainer", trainer, "--seed", "1",
            "--dataset-config-file", "configs/datasets/dtd.yaml",
            "--config-file", "configs/trainers/{}/{}.yaml".format(trainer, config), "--output-dir", out,
            "DATASET.NUM_SHOTS", "4", "DATASET.NOISE.RATE", "0.5", "TRAINER.PTNL.LOSS", "gce",
            "MODEL.BACKBONE.NAME", "pocket-vit"] + POCKET_OPTS + list(extra)
    run_py(args, env={"PTNL_CACHE_DIR": world["cache"]})
    with open(osp.join(out, "results.json")) as f:
        return json.load(f)


def test_maple_trains_on_the_vit_world(vit_world, tmp_path):
    res = _train(vit_world, str(tmp_path / "maple"), "MaPLe", "vit_b16",
                 ["TRAINER.MAPLE.PROMPT_DEPTH", "3", "OPTIM.MAX_EPOCH", "2"])
    assert res["trainer"] == "MaPLe" and res["noise"]["num_noisy"] == 12 * 2
    assert res["accuracy"] > 2 * vit_world["chance"], res["accuracy"]  # prompts that start near zero-shot


def test_promptsrc_trains_on_the_vit_world(vit_world, tmp_path):
    res = _train(vit_world, str(tmp_path / "promptsrc"), "PromptSRC", "vit_b16",
                 ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "3", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "3",
                  "TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1", "OPTIM.MAX_EPOCH", "2"])
    assert res["trainer"] == "PromptSRC" and res["noise"]["num_noisy"] == 12 * 2
    assert res["accuracy"] > 2 * vit_world["chance"], res["accuracy"]
