"""CoCoOp and KgCoOp (``ptnl/trainers/cocoop.py``, ``kgcoop.py``).

Equivalence with CoCoOp's reference trainer (KaiyangZhou/CoOp@ff61507 ``trainers/cocoop.py``):
``tests/fixtures/references/CoCoOp.json`` holds that trainer's run under real Dassl 0.6.3 on the tests'
generated world (noise 0, CE, random context, batch 4, 3 epochs, fp32 on CPU), recorded by
``tests/fixtures/references/record.py``. Patches in that run, all outside this repository: CoOp's
``clip._download`` returns the local weights file instead of downloading (the launcher in record.py),
and the Dassl install's two torch fixes of DASSL_SUBSET.md section 11 (the warm-up scheduler's base
constructor without ``verbose``; ``torch.load(weights_only=False)`` in ``load_checkpoint``, unused by
this run). PTNL's CoCoOp, replayed here under the built-in engine with the same options, must give the
same few-shot set, iteration losses, learned tensors (to float rounding: PTNL encodes the B x C
prompts of a batch in one truncated pass, the reference image by image over 77 positions) and test
predictions. With PTNL_DASSL_PYTHON set, PTNL's CoCoOp also runs under real Dassl and is compared.
"""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from conftest import REPO

FIXTURES = osp.join(REPO, "tests", "fixtures", "references")
_spec = importlib.util.spec_from_file_location("reference_record", osp.join(FIXTURES, "record.py"))
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)
PROBE = osp.join(REPO, "tests", "fixtures", "parity", "probe.py")
# Losses and checksums agree to 1e-4 relative: measured at most 2.5e-7 (losses) and 1.7e-6 (checksums; the
# reference's per-image 77-token pass against PTNL's batched truncated one changes float32 summation order only).
REL = 1e-4


@pytest.fixture(scope="module")
def ref_world(tmp_path_factory):
    world = reference.parity.make_world(str(tmp_path_factory.mktemp("reference-world")))
    world["digests"] = reference.parity.world_digests(world)
    return world


def fixture():
    with open(osp.join(FIXTURES, "CoCoOp.json")) as f:
        return json.load(f)


def run_ptnl(world, out, engine="builtin", python=sys.executable):
    probe = osp.join(out, "probe.json")
    env = dict(os.environ, PTNL_ENGINE=engine, PTNL_PLUGINS=PROBE, PTNL_PARITY_PROBE=probe, PTNL_OFFLINE="1",
               OUTDATED_IGNORE="1", PYTHONHASHSEED="0")
    proc = subprocess.run([python] + reference.ptnl_args(world, out), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(osp.join(out, "results.json")) as f:
        res = json.load(f)
    with open(probe) as f:
        probed = json.load(f)
    return res, probed


def compare(res, probed, rec):
    assert [loss[:2] for loss in probed["losses"]] == [loss[:2] for loss in rec["losses"]], "iterations differ"
    assert [loss[2] for loss in probed["losses"]] == pytest.approx([loss[2] for loss in rec["losses"]], rel=REL)
    assert [e["lr"] for e in res["epochs"]] == rec["lr"]
    assert sorted(probed["checksums"]) == sorted(rec["checksums"])
    for name, (numel, total, squares) in rec["checksums"].items():
        assert probed["checksums"][name][0] == numel, name
        assert probed["checksums"][name][1:] == pytest.approx([total, squares], rel=REL, abs=1e-6), name
    assert res["classnames"] == rec["classnames"]
    assert res["accuracy"] == pytest.approx(rec["accuracy"], abs=1e-9)
    assert res["per_class_accuracy"] == pytest.approx(rec["per_class_accuracy"], abs=1e-9)


def test_fixture_is_the_recorded_reference_on_this_world(ref_world):
    rec = fixture()
    assert rec["reference"]["commit"].startswith("ff61507") and rec["reference"]["trainer"] == "trainers/cocoop.py"
    assert rec["dassl"]["version"] == "0.6.3" and len(rec["dassl"]["commit"]) == 40
    assert rec["inputs"] == ref_world["digests"], "the generated world changed: re-record (record.py)"
    placeholders = {"data": "DATA", "clip": "clip-vit.pt"}
    assert rec["ptnl_command"] == " ".join(reference.ptnl_args(placeholders, "OUT")), "re-record: the case changed"
    assert len(rec["losses"]) == 18 and rec["lr"] == [1e-5, 0.002, 0.0015]


def test_fewshot_set_is_the_references(ref_world, tmp_path):
    """The few-shot picks of PTNL's DTD (built-in engine) are the reference run's, in order."""
    from ptnl.compat import get_cfg_default, set_random_seed
    from ptnl.config import extend_cfg
    import datasets.dtd as dtd
    cfg = extend_cfg(get_cfg_default())
    cfg.DATASET.ROOT, cfg.DATASET.NUM_SHOTS, cfg.SEED = ref_world["data"], 4, 1
    set_random_seed(1)  # train.py's seeding, before the dataset is built
    picks = [[osp.relpath(d.impath, ref_world["data"]), d.label] for d in dtd.DescribableTextures(cfg).train_x]
    assert picks == fixture()["fewshot"]


def test_ptnl_cocoop_reproduces_the_reference_trainer(ref_world, tmp_path):
    res, probed = run_ptnl(ref_world, str(tmp_path / "run"))
    compare(res, probed, fixture())


@pytest.mark.skipif(not os.environ.get("PTNL_DASSL_PYTHON"),
                    reason="set PTNL_DASSL_PYTHON to a python that has real Dassl installed")
def test_ptnl_cocoop_under_real_dassl_reproduces_the_reference_trainer(ref_world, tmp_path):
    res, probed = run_ptnl(ref_world, str(tmp_path / "run"), engine="dassl", python=os.environ["PTNL_DASSL_PYTHON"])
    assert res["engine"]["name"] == "dassl"
    compare(res, probed, fixture())


# ----------------------------------------------------------------------------- the learners' pieces
@pytest.fixture(scope="module")
def small_clip(world):
    from ptnl.clip.weights import load_clip
    torch.manual_seed(0)
    return load_clip(world["clip"])


NAMES = ["banded", "blotchy", "braided_hair", "bubbly"]


def naive_logits(model, features):
    """The release's computation, image by image over all 77 positions with CLIP's own transformer."""
    from ptnl.clip.text import normalize
    learner = model.prompt_learner
    f = normalize(features)
    out = []
    for fi in f:
        ctx = learner.ctx + learner.meta_net(fi[None])  # [n, D]
        prompts = torch.cat([learner.token_prefix, ctx[None].expand(len(NAMES), -1, -1), learner.token_suffix], 1)
        x = (prompts + model.text_encoder.positional_embedding).permute(1, 0, 2)
        x = model.text_encoder.transformer(x).permute(1, 0, 2)
        eot = learner.tokenized_prompts.argmax(-1)
        enc = model.text_encoder
        text = normalize(enc.ln_final(x)[torch.arange(len(NAMES)), eot] @ enc.text_projection)
        out.append(model.logit_scale.exp() * text @ fi)
    return torch.stack(out)


def test_batched_truncated_prompts_equal_the_per_image_computation(small_clip):
    """B x C prompts in one truncated pass (train) or in chunks (eval) give the release's per-image logits."""
    from ptnl.trainers import cocoop
    torch.manual_seed(1)
    learner = cocoop.ConditionalPromptLearner(NAMES, small_clip, n_ctx=4)
    model = cocoop.ConditionalCLIP(learner, small_clip)
    feats = torch.randn(5, small_clip.visual.output_dim)
    with torch.no_grad():
        expected = naive_logits(model, feats)
        assert model.train().logits_from_features(feats) == pytest.approx(expected, abs=1e-4)
        old = cocoop.PROMPTS_PER_PASS
        cocoop.PROMPTS_PER_PASS = 2 * len(NAMES)  # evaluation in chunks of two images
        try:
            assert model.eval().logits_from_features(feats) == pytest.approx(expected, abs=1e-4)
        finally:
            cocoop.PROMPTS_PER_PASS = old
    with torch.no_grad():
        f = torch.nn.functional.normalize(feats, dim=-1)
        prompts = learner(f)  # image-major: image 1's prompts are rows C..2C-1, its context ctx + meta_net(f_1)
        assert prompts.shape[0] == 5 * len(NAMES)
        assert torch.allclose(prompts[len(NAMES) + 2, 1:5], learner.ctx + learner.meta_net(f[1:2])[0], atol=1e-6)


@pytest.mark.parametrize("trainer", ["CoCoOp", "KgCoOp"])
def test_every_loss_trains_both_learners(small_clip, trainer):
    """Each registered loss (TRAINER.PTNL.LOSS) gives a finite loss whose gradient reaches every
    trainable tensor of the learner (and, for KgCoOp, the knowledge term adds to it)."""
    from ptnl.clip.features import text_classifier
    from ptnl.clip.prompts import PromptLearner
    from ptnl.losses import available_losses, build_loss
    from ptnl.trainers import cocoop, kgcoop
    torch.manual_seed(2)
    if trainer == "CoCoOp":
        model = cocoop.ConditionalCLIP(cocoop.ConditionalPromptLearner(NAMES, small_clip, n_ctx=4), small_clip)
    else:
        anchor = text_classifier(small_clip, NAMES, "{} texture.")
        model = kgcoop.AnchoredPromptCLIP(PromptLearner(NAMES, small_clip, n_ctx=4), small_clip, anchor)
    feats, labels = torch.randn(6, small_clip.visual.output_dim), torch.tensor([0, 1, 2, 3, 0, 1])
    trainable = [p for p in model.prompt_learner.parameters() if p.requires_grad]
    assert len(trainable) == (5 if trainer == "CoCoOp" else 1)  # ctx (+ the meta-net's two layers)
    for name in available_losses():
        model.zero_grad()
        logits = model.logits_from_features(feats)
        loss = build_loss(name)(logits, labels)
        if trainer == "KgCoOp":
            distance = kgcoop.knowledge_distance(model.last_text, model.anchor)
            assert 0 < distance.item() < 2
            loss = loss + 8.0 * distance
        assert torch.isfinite(loss), name
        loss.backward()
        for p in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_knowledge_distance_is_half_the_mean_squared_distance():
    from ptnl.trainers.kgcoop import knowledge_distance
    torch.manual_seed(3)
    a = torch.nn.functional.normalize(torch.randn(7, 16), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(7, 16), dim=-1)
    assert knowledge_distance(a, b).item() == pytest.approx(0.5 * ((a - b) ** 2).sum(1).mean().item(), rel=1e-5)
    assert knowledge_distance(a, a).item() == pytest.approx(0.0, abs=1e-6)
