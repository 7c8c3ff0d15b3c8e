"""MaPLe and PromptSRC: the deep-prompt encoders against the real CLIP (exactly, without prompts;
against hooks on the real model's own forward, with prompts), the release's prompt rules, GPA's
weights and aggregation, and both trainers end to end with label noise and every loss."""
import json
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch

from conftest import REPO, SMALL_OPTS
from ptnl import compat
from ptnl.clip import load_clip, tokenize
from ptnl.clip.deep_prompts import (PROMPTSRC_TEMPLATES, DeepPromptCLIP, IVLPPromptLearner, MaPLePromptLearner,
                                    deep_image_features, deep_text_features, release_text_prompt)
from ptnl.clip.text import TextEncoder
from ptnl.config import extend_cfg
from ptnl.errors import ConfigError
from ptnl.losses import available_losses, build_loss
from ptnl.trainers.promptsrc import gpa_weights

import datasets  # noqa: F401
import trainers.ptnl  # noqa: F401

CONFIGS = {"MaPLe": "configs/trainers/MaPLe/vit_b16.yaml", "PromptSRC": "configs/trainers/PromptSRC/vit_b16.yaml"}
DEPTH2 = ["TRAINER.MAPLE.PROMPT_DEPTH", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2",
          "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2"]  # the small CLIP has 2 blocks a tower


@pytest.fixture(scope="module")
def clip_model(world):
    return load_clip(world["clip"], device="cpu", prec="fp32")


# ----------------------------------------------------------------------------- encoders
def test_without_prompts_the_encoders_are_the_real_clip_exactly(clip_model):
    tokens = tokenize(["a photo of a banded.", "X X X X the long name of a very striped thing."])
    encoder = TextEncoder(clip_model)
    emb = clip_model.token_embedding(tokens).type(clip_model.dtype)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want_text, want_image = clip_model.encode_text(tokens), clip_model.encode_image(images)
        encoder.truncate = False  # every block's own forward on all 77 positions: bit for bit
        assert torch.equal(deep_text_features(encoder, emb, tokens), want_text)
        encoder.truncate = True  # up to the last end-of-text token: the same features up to float rounding
        torch.testing.assert_close(deep_text_features(encoder, emb, tokens), want_text, rtol=0, atol=1e-5)
        assert torch.equal(deep_image_features(clip_model.visual, images), want_image)


def test_deep_prompts_equal_replacing_tokens_inside_the_real_clip_forward(clip_model):
    """The expected features come from CLIP's own encode_text / encode_image with hooks that put
    the prompts in: a second, independent statement of where deep prompts go."""
    torch.manual_seed(0)
    dim, width = clip_model.ln_final.weight.shape[0], clip_model.visual.class_embedding.shape[0]
    tokens = tokenize(["X X X banded.", "X X X striped lines."])
    prompts = clip_model.token_embedding(tokens).detach() + 0.1 * torch.randn(2, 77, dim)
    deep_text = [torch.randn(3, dim) * 0.1]  # block 1, positions 1..3
    shallow, deep_vision = torch.randn(2, width) * 0.1, [torch.randn(2, width) * 0.1]
    images = torch.randn(2, 3, 32, 32)
    handles = [
        clip_model.token_embedding.register_forward_hook(lambda m, i, out: prompts),
        clip_model.transformer.resblocks[1].register_forward_pre_hook(
            lambda m, args: torch.cat([args[0][:1], deep_text[0][:, None].expand(-1, 2, -1), args[0][4:]])),
        clip_model.visual.ln_pre.register_forward_pre_hook(
            lambda m, args: torch.cat([args[0], shallow[None].expand(2, -1, -1)], dim=1)),
        clip_model.visual.transformer.resblocks[1].register_forward_pre_hook(
            lambda m, args: torch.cat([args[0][:-2], deep_vision[0][:, None].expand(-1, 2, -1)])),
    ]
    try:
        with torch.no_grad():
            want_text, want_image = clip_model.encode_text(tokens), clip_model.encode_image(images)
    finally:
        for h in handles:
            h.remove()
    encoder = TextEncoder(clip_model)
    with torch.no_grad():
        for truncate in (False, True):
            encoder.truncate = truncate
            torch.testing.assert_close(deep_text_features(encoder, prompts, tokens, deep_text), want_text,
                                       rtol=0, atol=1e-5)
        got_image = deep_image_features(clip_model.visual, images, shallow, deep_vision)
    torch.testing.assert_close(got_image, want_image, rtol=0, atol=1e-6)
    assert not torch.allclose(got_image, clip_model.encode_image(images), atol=1e-3)  # the prompts matter


# ----------------------------------------------------------------------------- prompt learners
def test_release_rule_learns_the_first_tokens_and_keeps_the_rest_as_words(clip_model):
    names, kwargs = release_text_prompt(["banded", "polka_dotted"], 2, "a photo of a")
    assert names == ["of a banded", "of a polka dotted"] and kwargs["ctx_init"] == "a photo"
    learner = MaPLePromptLearner(["banded", "polka_dotted"], clip_model, n_ctx=2, ctx_init="a photo of a", depth=2)
    assert learner.prompt_texts == ["a photo of a banded.", "a photo of a polka dotted."]
    full = clip_model.token_embedding(tokenize(["a photo of a banded."]))[0].detach()
    assert torch.equal(learner.ctx.detach(), full[1:3])  # "a photo" learned
    assert torch.equal(learner().detach()[0], full)  # the prompt is the whole sentence's embedding
    assert release_text_prompt(["a"], 4, "a photo of a")[1]["ctx_init"] == "a photo of a"
    assert release_text_prompt(["a"], 5, "a photo of a")[1]["ctx_init"] == ""  # longer than the init: random
    with pytest.raises(ConfigError, match="PROMPT_DEPTH is 3, but this CLIP's tower has 2 blocks"):
        MaPLePromptLearner(["a"], clip_model, depth=3)


def test_a_resnet_backbone_is_refused_with_what_to_use(tmp_path):
    from ptnl.clip.small import save_small_clip
    rn = load_clip(save_small_clip(str(tmp_path / "rn.pt"), kind="rn"), device="cpu", prec="fp32")
    for make in (MaPLePromptLearner, IVLPPromptLearner):
        with pytest.raises(ConfigError, match="ModifiedResNet image encoder: use ViT-B/16"):
            make(["a"], rn)


def test_maple_couples_vision_prompts_to_text_prompts(clip_model):
    torch.manual_seed(0)
    learner = MaPLePromptLearner(["banded", "striped"], clip_model, n_ctx=2, ctx_init="a photo of a", depth=2)
    p = learner.deep_prompts()
    torch.testing.assert_close(p.vision, learner.proj(learner.ctx))
    coupled = learner.compound_prompt_projections[0](learner.compound_prompts_text[0])
    torch.testing.assert_close(p.deep_vision[0], coupled)
    assert p.deep_text[0] is learner.compound_prompts_text[0]
    # the deeper text prompt gets gradient through the image side alone
    feats = deep_image_features(clip_model.visual, torch.randn(2, 3, 32, 32), p.vision, p.deep_vision)
    feats.sum().backward()
    assert learner.compound_prompts_text[0].grad.abs().sum() > 0 and learner.ctx.grad.abs().sum() > 0


def test_class_text_features_are_computed_once_per_test_pass_and_again_after_a_step(clip_model, monkeypatch):
    """Without gradients the class text features are reused while the learner is unchanged (one text
    pass for a whole test split), recomputed after a step changes a prompt, never reused with
    gradients on; the cached features equal fresh ones. Before, the cache waited for the wrapper's
    eval mode, which the trainers never set (the learner is the registered model): one pass a batch."""
    import ptnl.clip.deep_prompts as dp
    torch.manual_seed(0)
    learner = MaPLePromptLearner(["banded", "striped"], clip_model, n_ctx=2, ctx_init="a photo of a", depth=2)
    model = DeepPromptCLIP(learner, clip_model)
    calls = []
    real = dp.deep_text_features
    monkeypatch.setattr(dp, "deep_text_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first = model(images)
        again = model(images)
    assert len(calls) == 1 and torch.equal(first, again)
    with torch.no_grad():
        learner.ctx.add_(0.5)  # an optimiser step is an in-place update too
        stepped = model(images)
    assert len(calls) == 2 and not torch.equal(stepped, first)
    model(images)
    model(images)
    assert len(calls) == 4  # with gradients: every forward builds its graph
    with torch.no_grad():
        torch.testing.assert_close(model(images), stepped)
    assert len(calls) == 5


def test_promptsrc_prompts_are_independent(clip_model):
    learner = IVLPPromptLearner(["banded"], clip_model, n_ctx_text=4, n_ctx_vision=3, depth_text=2, depth_vision=2)
    shapes = {n: tuple(p.shape) for n, p in learner.named_parameters()}
    dim, width = clip_model.ln_final.weight.shape[0], clip_model.visual.class_embedding.shape[0]
    assert shapes == {"ctx": (4, dim), "deep_text.0": (4, dim), "vpt": (3, width), "deep_vision.0": (3, width)}
    p = learner.deep_prompts()  # no coupling: the image side trains the visual prompts only, the text side text ones
    deep_image_features(clip_model.visual, torch.randn(2, 3, 32, 32), p.vision, p.deep_vision).sum().backward()
    assert {n for n, q in learner.named_parameters() if q.grad is not None} == {"vpt", "deep_vision.0"}
    learner.zero_grad(set_to_none=True)
    deep_text_features(TextEncoder(clip_model), p.text, learner.tokenized_prompts, p.deep_text).sum().backward()
    assert {n for n, q in learner.named_parameters() if q.grad is not None} == {"ctx", "deep_text.0"}


def test_promptsrc_templates_are_clips_first_sixty_with_a_photo_of_a_first():
    open_clip = pytest.importorskip("open_clip")
    clip80 = [t("{}") for t in open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES]
    assert PROMPTSRC_TEMPLATES == ["a photo of a {}."] + [t for t in clip80[:60] if t != "a photo of a {}."]


def test_promptsrc_text_targets_average_unnormalised_features_then_normalise(clip_model):
    from ptnl.clip.deep_prompts import template_mean_text_features
    templates = ["a photo of a {}.", "itap of the {}."]
    with torch.no_grad():
        raw = [clip_model.encode_text(tokenize([t.format(c) for c in ("banded", "polka dotted")])) for t in templates]
        want = (raw[0] + raw[1]) / 2
        want = want / want.norm(dim=-1, keepdim=True)
    got = template_mean_text_features(clip_model, ["banded", "polka_dotted"], templates)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- GPA
def test_gpa_weights_are_the_releases_normalised_gaussian():
    for n, mean, std in ((20, 15, 1), (20, 6, 10), (50, 30, 30), (50, 45, 5)):
        w = gpa_weights(n, mean, std)
        assert len(w) == n and w.sum() == pytest.approx(1.0) and (w > 0).all()
        assert int(np.argmax(w)) + 1 == mean
    w = gpa_weights(20, 15, 1)  # the base-to-novel config: N(15, 1) over 20 epochs
    assert [round(x, 3) for x in w[12:17]] == [0.054, 0.242, 0.399, 0.242, 0.054] and w[:12].max() < 0.005
    w = gpa_weights(20, 6, 10)  # cross-dataset: broad
    assert (round(w[0], 3), round(w[5], 3), round(w[19], 3)) == (0.055, 0.063, 0.024)


# ----------------------------------------------------------------------------- trainers
def build(name, world, tmp_path, opts=()):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(CONFIGS[name])
    cfg.merge_from_list(["DATASET.ROOT", world["data"], "DATASET.NAME", "DescribableTextures", "DATASET.NUM_SHOTS", 4,
                         "SEED", 1, "TRAINER.NAME", name, "MODEL.BACKBONE.NAME", world["clip"],
                         "OUTPUT_DIR", str(tmp_path / name), "DATASET.NOISE.RATE", 0.5, "OPTIM.MAX_EPOCH", 3,
                         "TRAINER.PROMPTSRC.GPA_MEAN", 2.0] + DEPTH2 + SMALL_OPTS + list(opts))
    cfg.freeze()
    compat.set_random_seed(1)
    return compat.build_trainer(cfg)


TRAINABLE = {"MaPLe": {"ctx", "proj.weight", "proj.bias", "compound_prompts_text.0",
                       "compound_prompt_projections.0.weight", "compound_prompt_projections.0.bias"},
             "PromptSRC": {"ctx", "deep_text.0", "vpt", "deep_vision.0"}}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_loss_trains_the_prompts_only(name, world, tmp_path):
    """With label noise (half the shots), every registered loss: finite, falling on a fixed batch
    at a fixed learning rate, only the prompts move."""
    t = build(name, world, tmp_path, ["OPTIM.WARMUP_EPOCH", -1, "OPTIM.LR", 0.02])
    assert t.noise_record["num_noisy"] == 12
    trainable = {n for n, p in t.model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt_learner." + n for n in TRAINABLE[name]}
    frozen = {n: p.detach().clone() for n, p in t.model.named_parameters() if not p.requires_grad}
    batch = {k: v[:4] for k, v in next(iter(t.train_loader_x)).items()}
    start = {n: p.detach().clone() for n, p in t.model.prompt_learner.named_parameters()}
    t.set_model_mode("train")
    t.before_epoch()
    t.num_batches = 100  # no lr step inside
    for loss in available_losses():
        with torch.no_grad():
            for n, p in t.model.prompt_learner.named_parameters():
                p.copy_(start[n])
        for o in t._optims.values():
            o.state.clear()
        t.loss_fn = build_loss(loss)
        values = []
        for i in range(3):
            t.batch_idx = i
            values.append(t.forward_backward(batch)["loss"])
        assert np.isfinite(values).all() and values[-1] < values[0], (loss, values)
    for n, p in t.model.named_parameters():
        if n in frozen:
            assert torch.equal(p.detach(), frozen[n]), n


def _final_run(name, world, tmp_path, monkeypatch, extra=()):
    from conftest import run_main
    out = str(tmp_path / "run")
    argv = ["--root", world["data"], "--trainer", name, "--seed", "1", "--dataset-config-file",
            osp.join(REPO, "configs/datasets/dtd.yaml"), "--config-file", osp.join(REPO, CONFIGS[name]),
            "--output-dir", out,
            "MODEL.BACKBONE.NAME", world["clip"], "DATASET.NUM_SHOTS", "4", "DATASET.NOISE.RATE", "0.5",
            "DATASET.NOISE.MODE", "flip", "TRAINER.PTNL.LOSS", "gce", "OPTIM.MAX_EPOCH", "2",
            "TRAINER.PROMPTSRC.GPA_MEAN", "1.5"] + DEPTH2 + SMALL_OPTS + list(extra)
    return out, run_main(argv, monkeypatch, tmp_path)


def test_maple_end_to_end_with_noise_and_eval_only(world, tmp_path, monkeypatch):
    out, _ = _final_run("MaPLe", world, tmp_path, monkeypatch)
    res = json.load(open(osp.join(out, "results.json")))
    assert res["trainer"] == "MaPLe" and res["loss"] == "gce" and res["noise"]["mode"] == "flip"
    assert res["prompt"]["depth"] == 2 and res["prompt"]["n_ctx"] == 2
    assert [e["epoch"] for e in res["epochs"]] == [1, 2] and all(np.isfinite(e["loss"]) for e in res["epochs"])
    assert os.listdir(osp.join(out, "prompt_learner")) != []
    again = str(tmp_path / "eval")
    from conftest import run_main
    printed = run_main(["--root", world["data"], "--trainer", "MaPLe",
                        "--dataset-config-file", osp.join(REPO, "configs/datasets/dtd.yaml"),
              "--config-file", osp.join(REPO, CONFIGS["MaPLe"]), "--output-dir", again, "--eval-only",
              "--model-dir", out, "--load-epoch", "2", "MODEL.BACKBONE.NAME", world["clip"],
              "DATASET.NUM_SHOTS", "4"] + DEPTH2 + SMALL_OPTS, monkeypatch, tmp_path)
    tested = re.findall(r"\* accuracy: ([\d.]+)%", printed)[-1]
    assert tested == "{:.1f}".format(res["accuracy"])  # the checkpoint's prompts, class buffers rebuilt


def test_promptsrc_final_prompts_are_the_gaussian_weighted_epoch_prompts(world, tmp_path, monkeypatch):
    from ptnl.trainers.promptsrc import PromptSRC
    seen = []
    after_epoch = PromptSRC.after_epoch

    def spy(self):
        seen.append({n: p.detach().clone() for n, p in self.learned_state().items()})
        after_epoch(self)
        if self.epoch + 1 == self.max_epoch:
            seen.append({n: p.detach().clone() for n, p in self.learned_state().items()})
    monkeypatch.setattr(PromptSRC, "after_epoch", spy)
    out, _ = _final_run("PromptSRC", world, tmp_path, monkeypatch)
    w = gpa_weights(2, 1.5, 1.0)  # equal weights: the final prompts are the mean of the two epochs'
    *epochs, final = seen
    assert len(epochs) == 2
    for n in final:
        want = sum(float(w[e]) * epochs[e][n] for e in range(2))
        torch.testing.assert_close(final[n], want, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(final[n], epochs[-1][n])
    res = json.load(open(osp.join(out, "results.json")))
    assert res["trainer"] == "PromptSRC" and np.isfinite(res["accuracy"])
    from ptnl.engine.utils import load_checkpoint
    saved = load_checkpoint(osp.join(out, "prompt_learner", "model.pth.tar-2"))
    torch.testing.assert_close(saved["state_dict"]["vpt"], final["vpt"])  # the checkpoint holds the GPA prompts


# ----------------------------------------------------------------------------- equivalence with the reference
def test_maple_reproduces_the_reference_trainer_at_noise_0_with_ce(tmp_path, monkeypatch):
    """At noise 0 with cross-entropy, PTNL's MaPLe trains what the release's trainer trains
    (muzairkhattak/multimodal-prompt-learning@69bce21 ``trainers/maple.py``, run under real Dassl
    0.6.3 by ``tests/fixtures/deep/record_maple.py``): the same loss at every iteration (as the log
    prints it), the same learned prompts and coupling layers to float rounding, the same test
    accuracy. The reference ran with three patches outside this repository, none on the release's
    own path (ViT-B/16, fp16 on a GPU): a weights file as MODEL.BACKBONE.NAME (loaded weights-only),
    ViT-B/16's hard-coded widths (512, 768) read from the model, and its ``.half()`` casts of the
    prompts and of the layer-0 coupling layer made casts to the model's dtype (fp32 here).

    Measured: the largest difference of a learned value is 1.8e-6 (ctx, |values| up to 1.5), from
    the text tower run only up to the end-of-text token (the reference runs all 77 positions)."""
    import importlib.util
    from conftest import run_main
    spec = importlib.util.spec_from_file_location("record_maple", osp.join(REPO, "tests", "fixtures", "deep",
                                                                          "record_maple.py"))
    record = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(record)
    with open(osp.join(REPO, "tests", "fixtures", "deep", "maple_reference.json")) as f:
        rec = json.load(f)
    world = record.make_world(str(tmp_path / "world"))
    assert record.world_digests(world) == rec["inputs"], "the generated world changed: re-record the fixture"
    out = str(tmp_path / "out")
    argv = record.args_of(world, out, record.PTNL_OPTS)[1:]
    argv[argv.index("--dataset-config-file") + 1] = osp.join(REPO, "configs/datasets/dtd.yaml")
    argv[argv.index("--config-file") + 1] = osp.join(REPO, record.RELEASE_CONFIG)
    printed = run_main(argv, monkeypatch, tmp_path)
    assert record.iteration_losses(printed) == rec["losses"]
    assert record.final_accuracy(printed) == rec["accuracy"]
    from ptnl.engine.utils import load_checkpoint
    got = record.learned_record(load_checkpoint(osp.join(out, "prompt_learner", "model.pth.tar-3"))["state_dict"])
    for name, (numel, total, squares) in rec["checksums"].items():
        assert got["checksums"][name][0] == numel, name
        assert got["checksums"][name][1:] == pytest.approx([total, squares], rel=1e-4, abs=1e-5), name
    for name, values in rec["values"].items():
        torch.testing.assert_close(torch.tensor(got["values"][name]), torch.tensor(values), rtol=0, atol=1e-5)
