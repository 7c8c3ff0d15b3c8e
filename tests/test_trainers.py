"""The paper's model configurations as trainers: what each trains, and their equalities before
training (ClassifierC = ZeroshotCLIP = TEncFT; CLSTuning = CLIP's text features of the template;
FullPromptTuning = PTNL)."""
import os
import random

import pytest
import torch

from conftest import SMALL_OPTS
from ptnl import compat
from ptnl.config import extend_cfg

import datasets  # noqa: F401
import trainers.ptnl  # noqa: F401


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    import torchvision
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("r18") / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return str(path)


def build(name, world, tmp_path, opts=(), seed=1, backbone=None):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(os.path.join("configs", "trainers", "PTNL", "rn50.yaml"))
    cfg.merge_from_list(["DATASET.ROOT", world["data"], "DATASET.NAME", "DescribableTextures",
                         "DATASET.NUM_SHOTS", 4, "SEED", seed, "TRAINER.NAME", name,
                         "MODEL.BACKBONE.NAME", backbone or world["clip"], "OUTPUT_DIR", str(tmp_path / name),
                         "DATASET.NOISE.RATE", 0.5] + SMALL_OPTS + list(opts))
    cfg.freeze()
    compat.set_random_seed(seed)
    return compat.build_trainer(cfg)


def batch_of(trainer):
    return next(iter(trainer.test_loader))


def logits(trainer, batch):
    trainer.set_model_mode("eval")
    with torch.no_grad():
        return trainer.model_inference(batch["img"].to(trainer.device))


TRAINABLE = {
    "PTNL": {"prompt_learner.ctx"},
    "FullPromptTuning": {"prompt_learner.ctx", "prompt_learner.name_emb"},
    "CLSTuning": {"prompt_learner.name_emb"},
    "ClassifierR": {"head.weight", "head.bias"},
    "ClassifierC": {"head.weight", "head.bias"},
    "ZeroshotCLIP": set(),
    "LinearProbe": set(),
}


@pytest.mark.parametrize("name", sorted(TRAINABLE) + ["TEncFT", "ImageNetFT"])
def test_trainable_parameters_and_frozen_ones_unchanged(name, world, tmp_path, resnet18_file):
    opts, backbone = (), None
    if name == "ImageNetFT":
        opts, backbone = ("TRAINER.IMAGENET_FT.ARCH", "resnet18"), resnet18_file
    t = build(name, world, tmp_path, opts=("OPTIM.WARMUP_EPOCH", -1, "OPTIM.LR", 0.5) + tuple(opts),
              backbone=backbone)
    trainable = {n for n, p in t.model.named_parameters() if p.requires_grad}
    if name == "TEncFT":
        assert trainable and all(n.startswith("text_encoder.") for n in trainable)
        assert any("resblocks" in n for n in trainable) and "text_encoder.text_projection" in trainable
        assert not any(n.startswith(("image_encoder", "token_embedding")) for n in trainable)
    elif name == "ImageNetFT":
        assert trainable == {n for n, _ in t.model.named_parameters()} and "fc.weight" in trainable
    else:
        assert trainable == TRAINABLE[name]
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    if trainable:
        t.before_epoch()
        t.set_model_mode("train")
        t.batch_idx, t.num_batches = 0, 2
        t.forward_backward(next(iter(t.train_loader_x)))
    for n, p in t.model.named_parameters():
        if n in trainable:
            continue
        assert torch.equal(p.detach(), before[n]), n + " is frozen but changed"
    if trainable:
        assert any(not torch.equal(p.detach(), before[n]) for n, p in t.model.named_parameters()
                   if n in trainable)


def test_classifier_c_and_tenc_ft_equal_zeroshot_before_training(world, tmp_path):
    zs = build("ZeroshotCLIP", world, tmp_path)
    batch = batch_of(zs)
    ref = logits(zs, batch)
    for name in ("ClassifierC", "TEncFT"):
        other = build(name, world, tmp_path)
        torch.testing.assert_close(logits(other, batch), ref, rtol=1e-4, atol=1e-4)


def test_cls_tuning_text_features_equal_clip_template_features(world, tmp_path):
    t = build("CLSTuning", world, tmp_path)
    from ptnl.clip import load_clip, tokenize
    clip_model = load_clip(world["clip"])
    names = [c.replace("_", " ") for c in t.dm.dataset.classnames]
    with torch.no_grad():
        ref = clip_model.encode_text(tokenize(["a photo of a {}.".format(n) for n in names]))
        ref = ref / ref.norm(dim=-1, keepdim=True)
        got = t.model.text_features()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_full_prompt_tuning_equals_ptnl_with_same_init(world, tmp_path):
    opts = ("TRAINER.PTNL.CTX_INIT", "a photo of a")
    a = build("PTNL", world, tmp_path, opts=opts)
    b = build("FullPromptTuning", world, tmp_path, opts=opts)
    batch = batch_of(a)
    torch.testing.assert_close(logits(b, batch), logits(a, batch), rtol=1e-5, atol=1e-5)
    random_a = build("PTNL", world, tmp_path, seed=4)
    random_b = build("FullPromptTuning", world, tmp_path, seed=4)
    assert torch.equal(random_a.model.prompt_learner.ctx, random_b.model.prompt_learner.ctx)
    torch.testing.assert_close(logits(random_b, batch), logits(random_a, batch), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["PTNL", "ClassifierC", "TEncFT"])
def test_group_gradient_norms_match_per_sample_computation(name, world, tmp_path):
    t = build(name, world, tmp_path, opts=("TRAINER.PTNL.ANALYSIS", True))
    batch = next(iter(t.train_loader_x))
    image, label = batch["img"][:5], batch["label"][:5]
    t.set_model_mode("train")
    norms = t.per_sample_grad_norms(t.model(image), label)
    params = t.trainable_parameters()
    for i in range(5):
        loss = t.loss_fn(t.model(image[i:i + 1]), label[i:i + 1])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        direct = sum((g ** 2).sum() for g in grads if g is not None).sqrt().item()
        assert norms[i] == pytest.approx(direct, rel=1e-4)
    # the epoch record averages them per group
    t.before_epoch()
    impaths = batch["impath"][:5]
    t._track_gradients(t.model(image), label, impaths)
    noisy = [t.true_label_of[p] != int(y) for p, y in zip(impaths, label)]
    t._track(torch.zeros(5, t.num_classes), label, impaths, 0.0)
    rec = t.epoch_record()
    clean_norms = [n for n, z in zip(norms, noisy) if not z]
    noisy_norms = [n for n, z in zip(norms, noisy) if z]
    if clean_norms:
        assert rec["grad_norm_clean"] == pytest.approx(sum(clean_norms) / len(clean_norms), rel=1e-4)
    if noisy_norms:
        assert rec["grad_norm_noisy"] == pytest.approx(sum(noisy_norms) / len(noisy_norms), rel=1e-4)


def test_n_ctx_zero_trains_nothing_but_names(world, tmp_path):
    t = build("PTNL", world, tmp_path, opts=("TRAINER.PTNL.N_CTX", 0))
    assert t.model.prompt_learner.ctx.numel() == 0
    assert t.model.prompt_learner.prompt_texts[0] == "banded."
    t.set_model_mode("eval")
    assert logits(t, batch_of(t)).shape[1] == 6


def test_tenc_ft_trains_fp32_master_weights_and_every_step_moves_them(world, tmp_path):
    """PREC fp16 on CUDA becomes amp for TEncFT (fp32 weights, autocast); on CPU (fp32) one step
    changes every trainable tensor that received a non-zero gradient."""
    trainer = build("TEncFT", world, tmp_path, opts=["OPTIM.LR", 0.1])
    cpu = trainer.device
    trainer.device = torch.device("cuda")  # the mapping only: nothing runs on it
    assert trainer.precision == "amp"
    trainer.device = cpu
    assert trainer.precision == "fp32"
    params = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in params.items()}
    trainer.set_model_mode("train")
    trainer.before_epoch()
    trainer.batch_idx, trainer.num_batches = 0, 2
    trainer.forward_backward(next(iter(trainer.train_loader_x)))
    moved = [n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(moved) > 10
    assert [n for n in moved if torch.equal(before[n], params[n].detach())] == []
