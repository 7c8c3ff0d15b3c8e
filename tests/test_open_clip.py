"""open_clip backbones (``MODEL.BACKBONE.NAME open_clip:ARCH/PRETRAINED``): small open_clip models,
randomly initialised, nothing downloaded. ``tiny-clip`` is CLIP-like (causal text tower pooled at the
end-of-text token, matrix projection), loaded from a local file; ``tiny-sigmoid`` is SigLIP-like (no
causal mask, pooled at the last position, linear projection with bias, a logit bias, a tokenizer
without start token padded with end-of-text), loaded by tag from a hand-made Hugging Face hub cache.
The pocket world converted to open_clip must give what it gives through openai-clip."""
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch

from conftest import SMALL_OPTS
from ptnl import compat
from ptnl.config import extend_cfg

open_clip = pytest.importorskip("open_clip")

import datasets  # noqa: E402,F401
import trainers.ptnl  # noqa: E402,F401

SIGMOID = "ptnl-tiny-sigmoid"
HUB_REPO = "ptnl-test/tiny-sigmoid"
# SigLIP-like preprocessing of the fake tag (not CLIP's): it must reach INPUT.* and the transforms
SIGMOID_PREPROCESS = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bilinear",
                      "resize_mode": "squash"}


@pytest.fixture(scope="module")
def oc(tmp_path_factory):
    """The two small backbones: names, files, and the patched tokenizer and tag table."""
    from open_clip import pretrained as oc_pretrained

    from ptnl.clip.small import NoStartTokenizer, register_small_open_clip_configs, save_small_open_clip
    root = tmp_path_factory.mktemp("open_clip")
    register_small_open_clip_configs(str(root / "configs"))
    clip_file = save_small_open_clip("ptnl-tiny-clip", str(root / "tiny-clip.pt"), seed=1)
    # a hub cache: models--org--name/refs/main and snapshots/<commit>/<file> (a link into blobs/ normally)
    repo = root / "hub" / "models--ptnl-test--tiny-sigmoid"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    save_small_open_clip(SIGMOID, str(repo / "snapshots" / commit / "open_clip_model.safetensors"), seed=2)
    tags = {"tiny": dict(url="", hf_hub=HUB_REPO + "/", **SIGMOID_PREPROCESS),
            "missing": dict(url="", hf_hub="ptnl-test/not-cached/", **SIGMOID_PREPROCESS)}
    oc_pretrained._PRETRAINED[SIGMOID] = tags
    original = open_clip.get_tokenizer
    patched = lambda name, *a, **k: NoStartTokenizer(24) if name == SIGMOID else original(name, *a, **k)  # noqa: E731
    open_clip.get_tokenizer = patched
    old_dir = os.environ.get("PTNL_OPEN_CLIP_DIR")
    os.environ["PTNL_OPEN_CLIP_DIR"] = str(root / "hub")
    yield {"clip": "open_clip:ptnl-tiny-clip/" + clip_file, "sigmoid": "open_clip:{}/tiny".format(SIGMOID),
           "clip_file": clip_file, "hub": str(root / "hub")}
    open_clip.get_tokenizer = original
    oc_pretrained._PRETRAINED.pop(SIGMOID, None)
    if old_dir is None:
        os.environ.pop("PTNL_OPEN_CLIP_DIR", None)
    else:
        os.environ["PTNL_OPEN_CLIP_DIR"] = old_dir


def input_opts(name):
    """The INPUT keys the backbone's preprocessing implies (as train.py sets them)."""
    from ptnl.clip.preprocess import backbone_input
    inp = backbone_input(name)
    return ["INPUT.PIXEL_MEAN", inp["PIXEL_MEAN"], "INPUT.PIXEL_STD", inp["PIXEL_STD"],
            "INPUT.INTERPOLATION", inp["INTERPOLATION"]]


def build(name, world, backbone, out, opts=(), seed=1, config="PTNL"):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join("configs", "trainers", config, "rn50.yaml"))
    cfg.merge_from_list(["DATASET.ROOT", world["data"], "DATASET.NAME", "DescribableTextures",
                         "DATASET.NUM_SHOTS", 4, "SEED", seed, "TRAINER.NAME", name, "MODEL.BACKBONE.NAME", backbone,
                         "OUTPUT_DIR", str(out), "DATASET.NOISE.RATE", 0.25, "TRAINER.PTNL.PREC", "fp32",
                         "TRAINER.PTNL.N_CTX", 4] + SMALL_OPTS + input_opts(backbone) + list(opts))
    cfg.freeze()
    compat.set_random_seed(seed)
    return compat.build_trainer(cfg)


def test_names_spec_and_preprocessing(oc):
    from ptnl.clip.open_clip_backbone import backbone_label
    from ptnl.clip.preprocess import backbone_input, input_resolution
    from ptnl.clip.weights import load_clip, resolve_weights
    clip_model, sig = load_clip(oc["clip"]), load_clip(oc["sigmoid"])
    assert clip_model.weights_path == oc["clip_file"]
    assert resolve_weights(oc["sigmoid"]).startswith(oc["hub"]) and "snapshots" in sig.weights_path
    assert (clip_model.text_spec.start_tokens, clip_model.text_spec.causal, clip_model.text_spec.pool) == (1, True, "argmax")
    assert (sig.text_spec.start_tokens, sig.text_spec.causal, sig.text_spec.pool) == (0, False, "last")
    assert sig.text_spec.context_length == 24 and sig.logit_bias is not None
    assert isinstance(sig.text_projection, torch.nn.Linear) and sig.embed_dim == 32
    assert input_resolution(oc["sigmoid"]) == 32 == sig.visual.input_resolution
    inp = backbone_input(oc["sigmoid"])
    assert inp["PIXEL_MEAN"] == [0.5] * 3 and inp["INTERPOLATION"] == "bilinear"
    assert backbone_input(oc["clip"])["PIXEL_STD"] == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    assert backbone_label(oc["sigmoid"]) == SIGMOID + "/tiny"
    assert backbone_label(oc["clip"]) == "ptnl-tiny-clip/tiny-clip"


def own_zero_shot(arch, weights, images, classnames, template):
    """open_clip's own zero-shot classifier: its model, tokenizer, encode_image/encode_text, get_logits."""
    model = open_clip.create_model(arch, pretrained=weights).eval()
    tok = open_clip.get_tokenizer(arch)
    with torch.no_grad():
        text = model.encode_text(tok([template.format(c.replace("_", " ")) for c in classnames]), normalize=True)
        img = model.encode_image(images, normalize=True)
        logits = model.logit_scale.exp() * img @ text.t()
        if model.logit_bias is not None:
            logits = logits + model.logit_bias
    return logits


@pytest.mark.parametrize("which", ["clip", "sigmoid"])
def test_zeroshot_equals_open_clips_own_classifier_image_for_image(which, oc, world, tmp_path):
    from ptnl.clip.templates import dataset_template
    from ptnl.clip.weights import resolve_weights
    t = build("ZeroshotCLIP", world, oc[which], tmp_path / which)
    arch = oc[which].split(":", 1)[1].split("/", 1)[0]
    weights = resolve_weights(oc[which])
    got, ref = [], []
    t.set_model_mode("eval")
    for batch in t.test_loader:
        with torch.no_grad():
            got.append(t.model_inference(batch["img"]))
        ref.append(own_zero_shot(arch, weights, batch["img"], t.dm.dataset.classnames,
                                 dataset_template("DescribableTextures")))
    got, ref = torch.cat(got), torch.cat(ref)
    assert torch.equal(got.argmax(1), ref.argmax(1))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)  # the logits themselves: bias included (SigLIP)
    # the transform is the model's own: SigLIP-like mean/std and interpolation
    norm = [tf for tf in t.test_loader.dataset.transform.transforms if type(tf).__name__ == "Normalize"][0]
    assert list(norm.mean) == list(t.cfg.INPUT.PIXEL_MEAN)
    if which == "sigmoid":
        assert list(norm.mean) == [0.5] * 3 and t.cfg.INPUT.INTERPOLATION == "bilinear"


@pytest.mark.parametrize("which", ["clip", "sigmoid"])
def test_test_transform_is_open_clips_own_on_a_non_square_image(which, oc, world, tmp_path):
    """A 'squash' model (the SigLIP-like tag) is evaluated on the whole image resized to the square, not
    on CoOp's centre crop: the run's test transform equals open_clip's own on a 48x20 image, and a
    'shortest' model keeps CoOp's (which is open_clip's too). Features are cached per transform repr."""
    from PIL import Image
    from open_clip.transform import image_transform
    from ptnl.clip.open_clip_backbone import open_clip_preprocess
    t = build("ZeroshotCLIP", world, oc[which], tmp_path / which)
    pp = open_clip_preprocess(oc[which])
    own = image_transform(t.cfg.INPUT.SIZE[0], is_train=False, mean=pp["mean"], std=pp["std"],
                          resize_mode=pp["resize_mode"], interpolation=pp["interpolation"])
    rng = np.random.RandomState(0)
    img = Image.fromarray(rng.randint(0, 256, size=(20, 48, 3), dtype=np.uint8))
    for tfm in (t.dm.tfm_test, t.test_loader.dataset.transform):
        torch.testing.assert_close(tfm(img), own(img), rtol=0, atol=1e-6)
    assert (pp["resize_mode"] == "squash") == (which == "sigmoid")


def test_logit_bias_leaves_ce_and_gce_unchanged():
    """SigLIP's logits are exp(s) * cos + b (its sigmoid scores' logits); CE and GCE take a softmax over
    classes, which a shared shift leaves as it is: the loss with the bias equals the loss without."""
    from ptnl.losses import loss_from_cfg
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    logits, labels = torch.randn(8, 5) * 3, torch.randint(0, 5, (8,))
    for loss in ("ce", "gce"):
        cfg.TRAINER.PTNL.LOSS = loss
        fn = loss_from_cfg(cfg)
        torch.testing.assert_close(fn(logits - 10.0, labels), fn(logits, labels), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("which", ["clip", "sigmoid"])
def test_ptnl_trains_loss_falls(which, oc, world, tmp_path):
    t = build("PTNL", world, oc[which], tmp_path / which, opts=("OPTIM.LR", 1.0, "OPTIM.WARMUP_EPOCH", -1))
    batch = next(iter(t.train_loader_x))
    t.before_epoch()
    t.set_model_mode("train")
    t.batch_idx, t.num_batches = 0, 1000
    first = t.forward_backward(batch)["loss"]
    for _ in range(10):
        last = t.forward_backward(batch)["loss"]
    # measured (10 steps at lr 1 on one batch of the random tiny models): clip 1.96 -> 1.62, sigmoid 1.77 -> 1.42
    assert last < 0.9 * first


def _full_and_fast(model, learner):
    from ptnl.clip.text import TextEncoder
    full = TextEncoder(model, truncate=False, share_prefix=False)
    fast = TextEncoder(model, truncate=True, share_prefix=True)
    with torch.no_grad():
        prompts = learner()
        args = (prompts, learner.tokenized_prompts, learner.shared_positions())
        return full(*args), fast(*args)


def test_speed_paths_exact_on_causal_tower_and_off_on_non_causal(oc, monkeypatch, capsys):
    import ptnl.clip.text as text_mod
    from ptnl.clip.prompts import PromptLearner
    from ptnl.clip.weights import load_clip
    names = ["banded", "woven_fabric", "dotted"]
    calls = []
    original = text_mod.shared_prefix_forward
    monkeypatch.setattr(text_mod, "shared_prefix_forward", lambda *a: calls.append(1) or original(*a))
    causal = load_clip(oc["clip"])
    full, fast = _full_and_fast(causal, PromptLearner(names, causal, n_ctx=4))
    assert calls, "the shared-prefix path must run on a causal argmax tower"
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    # and both equal open_clip's own encode_text on the prompts' ids (context = the tokens "x")
    learner = PromptLearner(names, causal, n_ctx=4, ctx_init="x x x x")
    with torch.no_grad():
        torch.testing.assert_close(_full_and_fast(causal, learner)[1],
                                   causal.encode_text(learner.tokenized_prompts), rtol=1e-5, atol=1e-5)
    calls.clear()
    sig = load_clip(oc["sigmoid"])
    capsys.readouterr()
    learner = PromptLearner(names, sig, n_ctx=4, ctx_init="x x x x")
    full, fast = _full_and_fast(sig, learner)
    assert not calls and "speed paths off" in capsys.readouterr().out
    assert torch.equal(fast, full)
    with torch.no_grad():  # the full computation is open_clip's own
        torch.testing.assert_close(full, sig.encode_text(learner.tokenized_prompts), rtol=1e-5, atol=1e-5)
    # the prompt has no start token: the context starts at position 0
    assert learner.token_prefix.shape[1] == 0 and learner.shared_positions() == 4


ALL_TRAINERS = [("PTNL", "PTNL"), ("FullPromptTuning", "PTNL"), ("CLSTuning", "PTNL"), ("ClassifierR", "PTNL"),
                ("ClassifierC", "PTNL"), ("TEncFT", "PTNL"), ("LinearProbe", "PTNL"), ("ZeroshotCLIP", "PTNL"),
                ("UPL", "UPL"), ("JoAPR", "JoAPR"), ("NLPrompt", "NLPrompt")]


@pytest.mark.parametrize("name,config", ALL_TRAINERS)
def test_every_trainer_runs_end_to_end(name, config, oc, world, tmp_path):
    """On the SigLIP-like backbone (no start token, non-causal, linear projection, logit bias)."""
    if not osp.isfile(osp.join("configs", "trainers", config, "rn50.yaml")):
        config = "PTNL"
    opts = {"UPL": ("DATASET.NOISE.RATE", 0.0),  # UPL trains on pseudo-labels: no label noise
            "LinearProbe": ("TRAINER.LINEAR_PROBE.PROTOCOL", "fixed", "TRAINER.LINEAR_PROBE.C", 1.0)}.get(name, ())
    t = build(name, world, oc["sigmoid"], tmp_path / name, config=config, opts=("OPTIM.MAX_EPOCH", 1) + opts)
    t.train()
    with open(osp.join(t.output_dir, "results.json")) as f:
        res = json.load(f)
    assert 0 <= res["accuracy"] <= 100
    assert res["config"]["INPUT.PIXEL_MEAN"] == [0.5] * 3
    assert res["config"]["MODEL.BACKBONE.NAME"] == oc["sigmoid"]


def test_offline_and_missing_is_one_error_naming_the_files(oc, monkeypatch):
    from ptnl.clip.weights import WeightsNotFoundError, resolve_weights
    monkeypatch.setenv("PTNL_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights("open_clip:{}/missing".format(SIGMOID))
    msg = str(e.value)
    assert "open_clip_model.safetensors" in msg and "open_clip_pytorch_model.bin" in msg
    assert "https://huggingface.co/ptnl-test/not-cached" in msg and oc["hub"] in msg


def test_unknown_arch_and_tag_and_missing_package(oc, monkeypatch):
    from ptnl.clip.weights import BackboneError, resolve_weights
    with pytest.raises(BackboneError, match="did you mean ptnl-tiny-clip"):
        resolve_weights("open_clip:ptnl-tiny-clp/x")
    with pytest.raises(BackboneError, match="tags: tiny, missing"):
        resolve_weights("open_clip:{}/nope".format(SIGMOID))
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip now fails
    with pytest.raises(BackboneError, match=r'pip install -e "\.\[open_clip\]"'):
        resolve_weights(oc["sigmoid"])


# ----------------------------------------------------------------------------- the pocket world
@pytest.fixture(scope="module")
def pocket(tmp_path_factory):
    from ptnl.pocket import build as build_pocket
    cache = os.environ.get("PTNL_TEST_POCKET_CACHE") or str(tmp_path_factory.mktemp("pocket-cache"))
    world = build_pocket(cache)
    world["cache"] = cache
    return world


def test_pocket_via_open_clip_equals_pocket_via_openai_clip(pocket, tmp_path, monkeypatch):
    from ptnl.clip.weights import load_clip
    from ptnl.pocket import zero_shot_accuracy
    monkeypatch.setenv("PTNL_CACHE_DIR", pocket["cache"])
    via_openai, via_oc = load_clip("pocket"), load_clip("open_clip:pocket")
    assert type(via_oc).__name__ == "OpenClipModel" and via_oc.weights_path != via_openai.weights_path
    acc_openai, acc_oc = zero_shot_accuracy(via_openai, pocket["root"]), zero_shot_accuracy(via_oc, pocket["root"])
    assert acc_oc == acc_openai and acc_oc > 0.3  # measured 0.94 both ways (12 classes)
    # the same PTNL run: the same context draws, the same losses and accuracy to float rounding
    world = {"data": pocket["root"]}
    runs = []
    for name in ("pocket", "open_clip:pocket"):
        t = build("PTNL", world, name, tmp_path / name.replace(":", "_"),
                  opts=("OPTIM.MAX_EPOCH", 1, "INPUT.SIZE", "(64, 64)", "DATALOADER.TEST.BATCH_SIZE", 200))
        ctx0 = t.model.prompt_learner.ctx.detach().clone()
        t.train()
        with open(osp.join(t.output_dir, "results.json")) as f:
            runs.append((ctx0, t.model.prompt_learner.ctx.detach().clone(), json.load(f)["accuracy"]))
    assert torch.equal(runs[0][0], runs[1][0])
    torch.testing.assert_close(runs[1][1], runs[0][1], rtol=1e-4, atol=1e-5)
    assert runs[1][2] == pytest.approx(runs[0][2], abs=0.6)  # accuracy (%): at most one test image of ~200 apart
