"""JoAPR and NLPrompt (``ptnl.selection``, ``ptnl.trainers.selection``): each algorithmic step
against a direct computation on small arrays, each difference from the released code behind its
RELEASE_BUGS flag, partitions that beat random ones on the pocket world, and end-to-end runs."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import hypergeom, norm

from conftest import SMALL_OPTS, run_py, train_args
from ptnl import compat
from ptnl.config import extend_cfg
from ptnl.selection import joapr, nlprompt
from ptnl.selection.partition import partition_scores

import datasets  # noqa: F401
import trainers.ptnl  # noqa: F401


# ---------------------------------------------------------------- JoAPR's steps
def test_gaussian_intersection_is_where_the_densities_meet():
    mu_c, var_c, mu_n, var_n = 0.2, 0.01, 0.7, 0.04
    tau = joapr.gaussian_intersection(mu_c, var_c, mu_n, var_n)
    assert mu_c < tau < mu_n
    assert norm.pdf(tau, mu_c, var_c ** 0.5) == pytest.approx(norm.pdf(tau, mu_n, var_n ** 0.5), rel=1e-9)
    # the noisy component wider or narrower: still the root between the means
    tau2 = joapr.gaussian_intersection(0.2, 0.04, 0.7, 0.01)
    assert 0.2 < tau2 < 0.7 and norm.pdf(tau2, 0.2, 0.2) == pytest.approx(norm.pdf(tau2, 0.7, 0.1), rel=1e-9)
    assert joapr.gaussian_intersection(0.2, 0.02, 0.6, 0.02) == pytest.approx(0.4)  # equal spreads: midpoint


def test_release_intersection_uses_variances_and_a_stray_2():
    mu_c, v_c, mu_n, v_n = 0.2, 0.01, 0.7, 0.04
    a = v_n ** 2 - v_c ** 2
    b = 2 * (mu_n * v_c ** 2 - mu_c * v_n ** 2)
    c = (mu_c * v_n) ** 2 - (mu_n * v_c) ** 2 + 2 * (v_n * v_c) ** 2 * np.log(2 * v_c / v_n + 1e-8)
    want = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a + 1e-10)
    got = joapr.gaussian_intersection(mu_c, v_c, mu_n, v_n, release=True)
    assert got == pytest.approx(want, rel=1e-12)
    assert abs(got - joapr.gaussian_intersection(mu_c, v_c, mu_n, v_n)) > 1e-3  # the fix moves it
    # a negative discriminant: NaN, so threshold 1 passes nobody (the release); the fix has a root
    assert np.isnan(joapr.gaussian_intersection(0.13, 0.42, 0.28, 0.57, release=True))
    tau = joapr.gaussian_intersection(0.13, 0.42, 0.28, 0.57)
    assert norm.pdf(tau, 0.13, 0.42 ** 0.5) == pytest.approx(norm.pdf(tau, 0.28, 0.57 ** 0.5), rel=1e-9)


def test_gmm_posterior_of_the_low_component():
    rng = np.random.default_rng(0)
    loss = np.concatenate([rng.normal(0.1, 0.05, 60), rng.normal(0.8, 0.1, 40)])
    p, (mu_c, var_c), (mu_n, var_n) = joapr.fit_gmm(loss, seed=0)
    from sklearn.mixture import GaussianMixture
    g = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=0).fit(loss[:, None])
    low = g.means_.ravel().argmin()
    assert np.allclose(p, g.predict_proba(loss[:, None])[:, low])
    assert mu_c == pytest.approx(g.means_.ravel()[low]) and var_c == pytest.approx(g.covariances_.ravel()[low])
    assert mu_c < mu_n and (p[:60] > 0.5).all() and (p[60:] < 0.5).all()


def test_adaptive_threshold_and_partition():
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.1])
    r, pred = joapr.adaptive_threshold(p, 0.5, 5)
    assert r == pytest.approx((5 - 3) / 5) and pred.tolist() == [True, True, False, True, False]
    rng = np.random.default_rng(1)
    loss = joapr.minmax(np.concatenate([rng.normal(0.1, 0.05, 30), rng.normal(0.9, 0.05, 20)]))
    out = joapr.partition(loss, None, 0.5, 50, first=True, seed=3)
    p_c, (mu_c, v_c), (mu_n, v_n) = joapr.fit_gmm(loss, seed=3)
    tau = joapr.gaussian_intersection(mu_c, v_c, mu_n, v_n)
    r, pred2 = joapr.adaptive_threshold(p_c, 0.5, 50)
    assert np.array_equal(out["clean"], (loss < tau) | pred2) and out["thres"] == r
    assert np.allclose(out["weights"], p_c)  # first main epoch: w = p_c
    assert out["clean"][:30].all() and not out["clean"][30:].any()


def test_weights_belong_to_their_samples_and_the_release_misaligns_them():
    p_c = np.array([0.9, 0.5, 0.2, 0.7])
    p_y = np.array([0.8, 0.1, 0.6, 0.4])
    order = np.array([2, 0, 3, 1])
    assert np.allclose(joapr.sample_weights(p_c, None), p_c)
    assert np.allclose(joapr.sample_weights(p_c, p_y), p_c * p_y)
    assert np.allclose(joapr.sample_weights(p_c, p_y, order), p_c * p_y[order])  # sample i gets order[i]'s p
    loss = np.array([0.0, 0.1, 0.05, 0.9, 1.0, 0.95, 0.12, 0.02])
    p8 = np.linspace(0.1, 0.8, 8)
    perm = np.array([7, 6, 5, 4, 3, 2, 1, 0])
    fixed = joapr.partition(loss, p8, 0.5, 8, first=False, seed=0, release=False, order=perm)
    rel = joapr.partition(loss, p8, 0.5, 8, first=False, seed=0, release=True, order=perm)
    assert np.allclose(fixed["weights"], fixed["p_clean"] * p8)  # the order is ignored unless release
    assert np.allclose(rel["weights"], rel["p_clean"] * p8[perm])


def test_sharpening_refinement_and_mixup():
    p = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    want = p ** 2 / (p ** 2).sum(1, keepdim=True)
    assert torch.allclose(joapr.sharpen(p, 2.0), want)
    w, y = torch.tensor([0.9, 0.2]), torch.tensor([0, 1])
    mix = torch.stack([0.9 * torch.tensor([1., 0, 0]) + 0.1 * p[0], 0.2 * torch.tensor([0., 1, 0]) + 0.8 * p[1]])
    assert torch.allclose(joapr.refined_targets(w, y, p, 2.0), mix ** 2 / (mix ** 2).sum(1, keepdim=True))
    x, t = torch.arange(6.).view(3, 2), torch.eye(3)
    perm = torch.tensor([2, 0, 1])
    mx, mt = joapr.mixup(x, t, 0.7, perm)
    assert torch.allclose(mx, 0.7 * x + 0.3 * x[perm]) and torch.allclose(mt, 0.7 * t + 0.3 * t[perm])
    lam = joapr.mixup_lambda(np.random.default_rng(5), 0.001)
    raw = np.random.default_rng(5).beta(0.001, 0.001)
    assert lam == max(raw, 1 - raw) and lam >= 0.5


def test_loss_terms_against_direct_formulas():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    labels = torch.tensor([1, 2])
    p = logits.softmax(1)
    ent = -(p * p.log()).sum(1)
    assert torch.allclose(joapr.confidence_penalty(logits), -ent.mean())
    assert torch.allclose(joapr.selection_loss(logits, labels), -p[[0, 1], labels].log() + ent)
    t = torch.tensor([[0.2, 0.8, 0.0], [0.0, 0.5, 0.5]])
    assert torch.allclose(joapr.soft_cross_entropy(logits, t), -(t * p.log()).sum(1).mean())
    m = p.mean(0)
    assert torch.allclose(joapr.uniform_prior_penalty(logits), (1 / 3 * torch.log(1 / 3 / m)).sum())
    assert np.allclose(joapr.minmax(np.array([2.0, 4.0, 3.0])), [0, 1, 0.5])
    hist = [np.full(3, float(i)) for i in range(7)]
    assert np.allclose(joapr.averaged_loss(hist, 5), np.full(3, 4.0))


# ---------------------------------------------------------------- NLPrompt's steps
def test_sinkhorn_plan_matches_the_closed_form_2x2():
    c, reg = 0.3, 0.1
    plan = nlprompt.transport_plan(np.array([[0.0, c], [c, 0.0]]), reg, stop_thr=1e-12, num_iter=10000)
    k = np.exp(c / reg)
    p = k / (2 * (1 + k))  # symmetric plan [[p, 1/2-p], [1/2-p, p]], p^2/(1/2-p)^2 = exp(2c/reg)
    assert np.allclose(plan, [[p, 0.5 - p], [0.5 - p, p]], atol=1e-9)


def test_sinkhorn_plan_is_the_entropic_optimum():
    """Uniform marginals and the Gibbs form log P + M/reg = alpha_i + beta_j characterise the plan."""
    rng = np.random.default_rng(0)
    cost = rng.uniform(0, 1, (7, 3))
    for solver in ("sinkhorn", "sinkhorn_log"):
        plan = nlprompt.transport_plan(cost, 0.1, solver=solver, stop_thr=1e-12, num_iter=100000)
        assert np.allclose(plan.sum(1), 1 / 7) and np.allclose(plan.sum(0), 1 / 3)
        g = np.log(plan) + cost / 0.1
        resid = g - g.mean(1, keepdims=True) - g.mean(0, keepdims=True) + g.mean()
        assert np.abs(resid).max() < 1e-6


def test_cost_p_is_minus_p_up_to_a_row_constant_and_logp_is_minus_log_p():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    p = logits.double().softmax(1).numpy()
    m = nlprompt.ot_cost(logits, "p")
    shift = m + p  # -log_softmax(P) = -P + logsumexp(P): a constant per row
    assert np.allclose(shift, shift[:, :1])
    assert np.allclose(nlprompt.ot_cost(logits, "logp"), -np.log(p))
    with pytest.raises(ValueError, match="TRAINER.NLPROMPT.COST"):
        nlprompt.ot_cost(logits, "log")


def test_underflowing_plan_is_an_error_naming_the_key_or_the_release_zero_plan():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(0, 3, (40, 5)))
    labels = rng.integers(0, 5, 40)
    with pytest.raises(nlprompt.PlanUnderflow, match="TRAINER.NLPROMPT.REG 0.001.*SOLVER sinkhorn_log"):
        nlprompt.nlprompt_partition(logits, labels, 0.001)
    pseudo, clean = nlprompt.nlprompt_partition(logits, labels, 0.001, allow_underflow=True)  # the release
    assert (pseudo == 0).all() and np.array_equal(clean, labels == 0)
    for solver in ("sinkhorn_log", "auto"):
        pseudo_log, _ = nlprompt.nlprompt_partition(logits, labels, 0.001, solver=solver)
        assert len(set(pseudo_log.tolist())) > 1


def test_ot_partition_and_the_release_drop_last():
    plan = np.array([[0.1, 0.3], [0.2, 0.05], [0.0, 0.4]])
    pseudo, clean = nlprompt.ot_partition(plan, np.array([1, 1, 1]))
    assert pseudo.tolist() == [1, 0, 1] and clean.tolist() == [True, False, True]
    dropped = nlprompt.release_dropped(70, 32, seed=4)
    assert dropped.sum() == 70 % 32 and not nlprompt.release_dropped(64, 32, 4).any()
    assert not nlprompt.release_dropped(20, 32, 4).any()  # fewer than a batch: Dassl keeps them
    logits = torch.tensor(np.random.default_rng(2).normal(0, 1, (70, 4)))
    labels = np.random.default_rng(3).integers(0, 4, 70)
    pseudo, clean = nlprompt.nlprompt_partition(logits, labels, 0.01, exclude=dropped)
    assert (pseudo[dropped] == -1).all() and not clean[dropped].any()
    plan = nlprompt.transport_plan(nlprompt.ot_cost(logits[torch.as_tensor(~dropped)]), 0.01)
    assert np.array_equal(pseudo[~dropped], plan.argmax(1))  # the others: the plan over the kept rows


def test_partition_scores():
    pred = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    true = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    s = partition_scores(pred, true)
    assert s["precision"] == pytest.approx(200 / 3) and s["recall"] == pytest.approx(200 / 3)
    assert (s["num_noisy"], s["num_clean"], s["num_found"], s["num_truly_noisy"]) == (3, 3, 2, 3)
    empty = partition_scores(np.zeros(4, bool), np.zeros(4, bool))
    assert empty["precision"] is None and empty["recall"] is None
    assert "scored_on" not in s
    # only some samples' noise known (verified labels): scored on those alone
    known = np.array([1, 1, 1, 0, 0, 1], dtype=bool)
    v = partition_scores(pred, true, known=known)  # U ∩ known = {0, 1}, noisy ∩ known = {0, 2}
    assert v["precision"] == pytest.approx(50.0) and v["recall"] == pytest.approx(50.0)
    assert (v["num_noisy"], v["num_found"], v["num_truly_noisy"], v["num_scored"]) == (3, 1, 2, 4)
    assert v["scored_on"] == "verified"
    none = partition_scores(pred, true, known=np.zeros(6, bool))
    assert none["precision"] is None and none["recall"] is None and none["num_scored"] == 0


# ---------------------------------------------------------------- trainers in process
def build(data, clip, out, trainer, opts=(), seed=1, shots=4, dataset_cfg="configs/datasets/dtd.yaml"):
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(dataset_cfg)
    cfg.merge_from_file("configs/trainers/{}/rn50.yaml".format(trainer))
    cfg.merge_from_list(["DATASET.ROOT", data, "DATASET.NUM_SHOTS", shots, "SEED", seed, "TRAINER.NAME", trainer,
                         "MODEL.BACKBONE.NAME", clip, "OUTPUT_DIR", str(out), "DATASET.NOISE.RATE", 0.5,
                         "OPTIM.MAX_EPOCH", 2, "TRAINER.PTNL.PREC", "fp32"] + SMALL_OPTS + list(opts))
    cfg.freeze()
    compat.set_random_seed(seed)
    return compat.build_trainer(cfg)


def test_training_pass_is_in_item_order_for_both_transforms(world, tmp_path):
    t = build(world["data"], world["clip"], tmp_path / "a", "NLPrompt")
    t.before_train()
    cached = t.training_pass("test")
    with torch.no_grad():  # directly, item by item
        img = torch.stack([t.dm.test_loader.dataset.transform(compat.read_image(d.impath)) for d in t.train_items])
        direct = t.model(img).float()
    assert torch.allclose(cached["logits"], direct, atol=1e-4)
    assert torch.allclose(cached["loss"], F.cross_entropy(direct, torch.as_tensor(t.given_labels), reduction="none"),
                          atol=1e-4)
    t.cfg.defrost()
    t.cfg.TRAINER.PTNL.CACHE_FEATURES = False
    assert torch.allclose(t.training_pass("test")["logits"], direct, atol=1e-4)  # the loader path
    aug = t.training_pass("train")
    assert aug["logits"].shape == direct.shape and not torch.allclose(aug["logits"], direct, atol=1e-4)
    assert torch.equal(t.training_pass("train")["logits"], aug["logits"])  # per_sample: drawn per (epoch, item)


def test_subset_loaders_are_restored_and_nlprompt_keeps_every_item(world, tmp_path, monkeypatch):
    t = build(world["data"], world["clip"], tmp_path / "a", "NLPrompt", ["OPTIM.MAX_EPOCH", 1])
    full = t.train_loader_x
    t.train()
    assert t.train_loader_x is full
    assert not t._loader_x.drop_last and not t._loader_u.drop_last
    assert len(t._loader_x.dataset) + len(t._loader_u.dataset) == len(t.train_items)
    seen = sum(len(b["impath"]) for ld in (t._loader_x, t._loader_u) for b in ld)
    assert seen == len(t.train_items)  # no drop_last loss
    rel = build(world["data"], world["clip"], tmp_path / "b", "NLPrompt",
                ["OPTIM.MAX_EPOCH", 1, "TRAINER.NLPROMPT.RELEASE_BUGS", True, "DATALOADER.TRAIN_X.BATCH_SIZE", 5])
    seen_logits = []
    real = nlprompt.nlprompt_partition

    def spy(logits, labels, *a, **kw):
        seen_logits.append(logits.clone())
        return real(logits, labels, *a, **kw)
    monkeypatch.setattr(nlprompt, "nlprompt_partition", spy)
    rel.train()
    n = len(rel.train_items)
    # which items are in U, computed here: the last n mod 5 of the stream's order (the release's drop_last)
    # and, of the others, those whose transport pseudo-label is not their given label
    dropped = nlprompt.release_dropped(n, 5, rel.stream(0, 5))
    assert dropped.sum() == n % 5 > 0
    keep = ~dropped
    plan = nlprompt.transport_plan(nlprompt.ot_cost(seen_logits[0][torch.as_tensor(keep)]), 0.01)
    noisy = dropped.copy()
    noisy[keep] = plan.argmax(1) != rel.given_labels[keep]
    assert rel._u_idx.tolist() == np.flatnonzero(noisy).tolist()
    assert rel._x_idx.tolist() == np.flatnonzero(~noisy).tolist()
    assert rel.epoch_records[-1]["partition"]["num_noisy"] == int(noisy.sum())
    for ld in (rel._loader_x, rel._loader_u):
        assert ld is None or ld.drop_last == (len(ld.dataset) >= 5)


@pytest.mark.parametrize("release,batches", [(True, {"x": 0, "u": 0}), (False, {"x": 1, "u": 1})])
def test_nlprompt_release_subsets_drop_last_whatever_their_size(world, tmp_path, monkeypatch, release, batches):
    """The release deep-copies the full loader (drop_last, as the full set holds a batch) for X and U:
    a clean subset of 20 items (and a noisy one of 28) trains no batch under RELEASE_BUGS True, one
    without; the lr still steps once that epoch."""
    def split_20(logits, labels, *a, **kw):
        clean = np.zeros(len(labels), dtype=bool)
        clean[:20] = True
        return np.where(clean, labels, -1), clean
    monkeypatch.setattr(nlprompt, "nlprompt_partition", split_20)
    t = build(world["data"], world["clip"], tmp_path / "a", "NLPrompt",
              ["OPTIM.MAX_EPOCH", 1, "DATASET.NUM_SHOTS", 8, "DATALOADER.TRAIN_X.BATCH_SIZE", 32,
               "TRAINER.NLPROMPT.RELEASE_BUGS", release])
    assert len(t.train_items) == 48 >= 32  # the full loader drops its last partial batch
    trained, lr_steps = {"x": 0, "u": 0}, []
    step, update = t.compute_loss, t.update_lr

    def spy(batch):
        trained[t._phase] += 1
        assert len(batch["impath"]) == (20 if t._phase == "x" else 28)
        return step(batch)
    t.compute_loss = spy
    t.update_lr = lambda *a: (lr_steps.append(t.epoch), update(*a))
    t.train()
    assert trained == batches
    assert len(t._x_idx) == 20 and len(t._u_idx) == 28
    assert lr_steps == [0]


def test_nlprompt_underflow_stops_the_run_unless_release(world, tmp_path):
    with pytest.raises(nlprompt.PlanUnderflow, match="TRAINER.NLPROMPT.REG"):
        build(world["data"], world["clip"], tmp_path / "a", "NLPrompt",
              ["TRAINER.NLPROMPT.REG", 1e-5, "OPTIM.MAX_EPOCH", 1]).train()
    rel = build(world["data"], world["clip"], tmp_path / "b", "NLPrompt",
                ["TRAINER.NLPROMPT.REG", 1e-5, "OPTIM.MAX_EPOCH", 1, "TRAINER.NLPROMPT.RELEASE_BUGS", True])
    rel.train()  # the release: all-zero plan, every pseudo-label class 0
    assert rel.epoch_records[-1]["partition"]["pseudo_label_accuracy"] == pytest.approx(
        100 * float((rel.true_labels == 0).mean()))


def test_joapr_empty_noisy_set_and_release_n(world, tmp_path, monkeypatch):
    calls = []
    real = joapr.partition

    def all_clean(loss, p_given, thres, n, first, **kw):
        calls.append(n)
        out = real(loss, p_given, thres, n, first, **kw)
        out["clean"] = np.ones_like(out["clean"])
        return out
    monkeypatch.setattr(joapr, "partition", all_clean)
    t = build(world["data"], world["clip"], tmp_path / "a", "JoAPR", ["DATASET.NOISE.MODE", "flip",
                                                                      "DATASET.NUM_SHOTS", 3])
    t.train()  # warm-up, then a main epoch on X alone
    assert t.epoch_records[-1]["partition"]["num_noisy"] == 0 and "accuracy" in t.last_test
    assert calls == [len(t.train_items)]
    rel = build(world["data"], world["clip"], tmp_path / "b", "JoAPR", ["TRAINER.JOAPR.RELEASE_BUGS", True])
    with pytest.raises(RuntimeError, match="noisy set is empty.*RELEASE_BUGS"):
        rel.train()
    assert calls[-1] == rel.num_classes * 4  # the release's N: classes x shots


def test_joapr_batches_carry_their_own_weights(world, tmp_path):
    t = build(world["data"], world["clip"], tmp_path / "a", "JoAPR")
    seen = []
    step = t.compute_loss

    def spy(batch):
        if not t.in_warmup():
            nx = batch["num_x"]
            idx = batch["index"][:nx].numpy()
            assert np.allclose(batch["weight"].numpy(), t._weights[idx])
            assert [t.train_items[i].impath for i in batch["index"].numpy()] == list(batch["impath"])
            seen.append(nx)
        return step(batch)
    t.compute_loss = spy
    scalars = []
    t.write_scalar = lambda tag, value, step=None: scalars.append((tag, step))
    t.train()
    assert seen and t.epoch_records[-1]["partition"]["num_samples"] == len(t.train_items)
    assert ("partition/precision", 2) in scalars and ("partition/recall", 2) in scalars  # TensorBoard


@pytest.mark.parametrize("key,value", [("TRAINER.NLPROMPT.PASS_TRANSFORM", "augmented"),
                                       ("TRAINER.NLPROMPT.COST", "log"), ("TRAINER.NLPROMPT.SOLVER", "exact")])
def test_bad_option_is_named(world, tmp_path, key, value):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build(world["data"], world["clip"], tmp_path / "a", "NLPrompt", [key, value])


# ---------------------------------------------------------------- the pocket world: better than chance
@pytest.fixture(scope="module")
def pocket():
    from ptnl.pocket import build as build_world
    cache = os.environ.get("PTNL_TEST_POCKET_CACHE") or os.environ["PTNL_CACHE_DIR"]
    return build_world(cache)


@pytest.mark.parametrize("trainer,epochs", [("NLPrompt", 2), ("JoAPR", 3)])
def test_partition_beats_a_random_one_of_the_same_size(pocket, tmp_path, trainer, epochs):
    """Sym swap 0.5, 16 shots: the noisy set holds more truly noisy samples than a random subset of
    its size would, at the 1% level (hypergeometric)."""
    t = build(pocket["root"], "pocket", tmp_path / trainer, trainer, shots=16,
              opts=["INPUT.SIZE", "(64, 64)", "OPTIM.MAX_EPOCH", epochs, "DATALOADER.TRAIN_X.BATCH_SIZE", 32])
    t.train()
    p = t.epoch_records[-1]["partition"]
    n, k, m, hits = p["num_samples"], p["num_truly_noisy"], p["num_noisy"], p["num_found"]
    assert 0 < m < n
    assert hypergeom.sf(hits - 1, n, k, m) < 0.01, p


def test_method_keys_belong_to_their_runs_identity():
    """Runs of other trainers (made before these keys existed, too) keep their identity and digest."""
    from ptnl.runs.identity import config_diff, settings_digest
    old = {"TRAINER.NAME": "PTNL", "OPTIM.LR": 0.002}
    new = dict(old, **{"TRAINER.JOAPR.ALPHA1": 0.5, "TRAINER.NLPROMPT.REG": 0.01})
    assert config_diff(old, new) == [] and settings_digest(old) == settings_digest(new)
    a = dict(new, **{"TRAINER.NAME": "JoAPR"})
    assert config_diff(a, dict(a, **{"TRAINER.JOAPR.ALPHA1": 0.1})) == [("TRAINER.JOAPR.ALPHA1", 0.5, 0.1)]
    assert config_diff(a, dict(a, **{"TRAINER.NLPROMPT.REG": 0.1})) == []
    assert settings_digest(a) != settings_digest(dict(a, **{"TRAINER.JOAPR.ALPHA1": 0.1}))


# ---------------------------------------------------------------- end to end
def test_importing_the_engine_leaves_logging_enabled():
    """Real Dassl's wilds module calls logging.disable(WARNING) on import; compat undoes it, so
    PTNL's lines (``* epoch``, ``* partition``) reach log.txt under both engines."""
    import logging
    assert compat.ENGINE in ("dassl", "builtin") and logging.root.manager.disable == logging.NOTSET


@pytest.mark.parametrize("trainer", ["JoAPR", "NLPrompt"])
def test_trainer_end_to_end(world, tmp_path, trainer):
    out = str(tmp_path / trainer)
    args = train_args(world["data"], world["clip"], out, epochs=3)
    args[args.index("--trainer") + 1] = trainer
    args[args.index("--config-file") + 1] = "configs/trainers/{}/rn50.yaml".format(trainer)
    run_py(args)
    rec = json.load(open(osp.join(out, "results.json")))
    assert rec["trainer"] == trainer and rec["method"] == trainer.lower()
    # the reported accuracy is the saved final model's on the test split, computed here image by image
    t = build(world["data"], world["clip"], tmp_path / "check", trainer, ["OPTIM.MAX_EPOCH", 3])
    t.load_model(out, epoch=3)
    t.set_model_mode("eval")
    test = t.dm.dataset.test
    with torch.no_grad():
        img = torch.stack([t.dm.test_loader.dataset.transform(compat.read_image(d.impath)) for d in test])
        pred = t.model(img).argmax(1).numpy()
    assert rec["accuracy"] == pytest.approx(100.0 * float((pred == np.array([d.label for d in test])).mean()),
                                            abs=1e-6)
    main_epochs = 3 - (1 if trainer == "JoAPR" else 0)  # JoAPR's warm-up epoch has no partition
    assert [p["epoch"] for p in rec["partition"]] == list(range(4 - main_epochs, 4))
    assert rec["partition_final"] == rec["partition"][-1]
    assert set(rec["partition_final"]) >= {"precision", "recall", "num_noisy", "num_truly_noisy"}
    log = open(osp.join(out, "log.txt")).read()
    assert log.count("* partition (epoch") == main_epochs and "* accuracy:" in log
