"""ptnl.losses: CE / GCE / MAE on logits, always in fp32 (docs/methods.md)."""
import math

import pytest
import torch
import torch.nn.functional as F

from ptnl.losses import LOSSES, build_loss, cross_entropy, generalized_cross_entropy, mean_absolute_error


def batch(seed=0, b=12, c=7, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, c, generator=g, dtype=torch.float64) * scale).to(dtype)
    labels = torch.randint(0, c, (b,), generator=g)
    return logits, labels


def p_true(logits, labels):
    p = torch.softmax(logits.double(), dim=1)
    return p[torch.arange(len(labels)), labels]


@pytest.mark.parametrize("q", (0.1, 0.3, 0.7, 0.9, 1.0))
@pytest.mark.parametrize("seed", (0, 1, 2))
def test_gce_matches_hand_formula(q, seed):
    logits, labels = batch(seed)
    expected = ((1 - p_true(logits, labels) ** q) / q).mean()
    got = generalized_cross_entropy(logits, labels, q=q)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert build_loss("gce", gce_q=q)(logits, labels).item() == pytest.approx(expected.item(), rel=1e-5,
                                                                               abs=1e-6)


def test_gce_default_q_is_0_7():
    logits, labels = batch(3)
    assert build_loss("gce")(logits, labels).item() == pytest.approx(
        generalized_cross_entropy(logits, labels, q=0.7).item(), rel=1e-6)


@pytest.mark.parametrize("seed", (0, 1, 2))
def test_gce_small_q_approaches_ce(seed):
    logits, labels = batch(seed, scale=1.5)
    ce = F.cross_entropy(logits, labels).item()
    gce = build_loss("gce", gce_q=1e-4)(logits, labels).item()
    assert gce == pytest.approx(ce, rel=1e-3)
    assert build_loss("ce")(logits, labels).item() == pytest.approx(ce, rel=1e-6)


@pytest.mark.parametrize("seed", (0, 1, 2))
def test_gce_at_one_equals_mae(seed):
    logits, labels = batch(seed)
    expected = (1 - p_true(logits, labels)).mean().item()
    gce = build_loss("gce", gce_q=1.0)(logits, labels).item()
    mae = build_loss("mae")(logits, labels).item()
    assert gce == pytest.approx(expected, rel=1e-5)
    assert mae == pytest.approx(expected, rel=1e-5)
    assert gce == pytest.approx(mae, rel=1e-6)


def test_ce_matches_negative_log_likelihood():
    logits, labels = batch(4)
    expected = (-torch.log(p_true(logits, labels))).mean().item()
    assert cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-5)


def test_gce_is_bounded_for_confidently_wrong_samples():
    logits = torch.tensor([[100.0, -100.0, -100.0]])
    labels = torch.tensor([2])
    q = 0.7
    gce = build_loss("gce", gce_q=q)(logits, labels).item()
    assert math.isfinite(gce) and gce <= 1 / q + 1e-6
    assert build_loss("mae")(logits, labels).item() == pytest.approx(1.0)
    assert build_loss("ce")(logits, labels).item() == pytest.approx(200.0, rel=1e-4)


@pytest.mark.parametrize("name", ("ce", "gce", "mae"))
def test_half_precision_logits_give_fp32_loss(name):
    logits32, labels = batch(5, scale=2.0)
    logits16 = logits32.half()
    loss = build_loss(name, gce_q=0.7)
    out16 = loss(logits16, labels)
    assert out16.dtype == torch.float32
    # the same numbers as the fp32 computation on the (rounded) half logits
    ref = loss(logits16.float(), labels)
    assert ref.dtype == torch.float32
    assert out16.item() == pytest.approx(ref.item(), rel=1e-6, abs=1e-7)
    # and close to the loss on the unrounded logits
    assert out16.item() == pytest.approx(loss(logits32, labels).item(), rel=5e-3, abs=1e-4)


@pytest.mark.parametrize("name", ("ce", "gce", "mae"))
def test_bfloat16_logits_give_fp32_loss(name):
    logits, labels = batch(6)
    loss = build_loss(name)
    out = loss(logits.bfloat16(), labels)
    assert out.dtype == torch.float32
    # computed in fp32 on the rounded logits (a bf16 computation would differ by about 1e-2 relative),
    # and close to the loss on the unrounded ones (bf16 keeps 8 bits of mantissa)
    assert out.item() == pytest.approx(loss(logits.bfloat16().float(), labels).item(), rel=1e-6, abs=1e-7)
    assert out.item() == pytest.approx(loss(logits, labels).item(), rel=3e-2, abs=1e-3)


@pytest.mark.parametrize("name", ("ce", "gce", "mae"))
@pytest.mark.parametrize("dtype", (torch.float32, torch.float16))
def test_gradients_flow(name, dtype):
    logits, labels = batch(7, dtype=dtype)
    logits.requires_grad_(True)
    loss = build_loss(name)(logits, labels)
    loss.backward()
    assert logits.grad is not None and logits.grad.dtype == dtype
    assert logits.grad.shape == logits.shape
    assert torch.isfinite(logits.grad.float()).all() and logits.grad.abs().sum() > 0
    # descending the gradient lowers the loss (fp32 check)
    if dtype == torch.float32:
        with torch.no_grad():
            stepped = logits - 0.1 * logits.grad
        assert build_loss(name)(stepped, labels).item() < loss.item()


def test_gce_gradient_matches_autograd_of_formula():
    logits, labels = batch(8, dtype=torch.float64)
    a = logits.clone().float().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    generalized_cross_entropy(a, labels, q=0.5).backward()
    p = torch.softmax(b, dim=1)[torch.arange(len(labels)), labels]
    ((1 - p ** 0.5) / 0.5).mean().backward()
    torch.testing.assert_close(a.grad.double(), b.grad, rtol=1e-4, atol=1e-6)


def test_unknown_loss_lists_known_losses():
    with pytest.raises(ValueError) as info:
        build_loss("focal")
    msg = str(info.value)
    assert "focal" in msg and "TRAINER.PTNL.LOSS" in msg
    for name in ("ce", "gce", "mae"):
        assert name in msg
    for name in LOSSES:
        assert name in msg


@pytest.mark.parametrize("q", (0.0, -0.5, 1.0001, 2.0))
def test_gce_rejects_q_outside_unit_interval(q):
    logits, labels = batch(9)
    with pytest.raises(ValueError, match="GCE_Q"):
        generalized_cross_entropy(logits, labels, q=q)
    with pytest.raises(ValueError, match="GCE_Q"):
        build_loss("gce", gce_q=q)(logits, labels)


def test_other_losses_ignore_gce_q():
    logits, labels = batch(10)
    assert build_loss("ce", gce_q=5.0)(logits, labels).item() == pytest.approx(
        F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert build_loss("mae", gce_q=0.0)(logits, labels).item() == pytest.approx(
        mean_absolute_error(logits, labels).item(), rel=1e-6)


def test_build_loss_names_function():
    for name in ("ce", "gce", "mae"):
        assert build_loss(name).__name__ == name


def test_design_losses_are_registered():
    logits, labels = batch(11)
    for name in ("ce", "gce", "mae", "sce", "nce_rce"):
        out = build_loss(name)(logits, labels)
        assert out.dtype == torch.float32 and torch.isfinite(out)


def test_sce_and_nce_rce_formulas():
    torch.manual_seed(3)
    logits, labels = torch.randn(9, 5), torch.randint(0, 5, (9,))
    p = torch.softmax(logits, 1)
    py = p[torch.arange(9), labels]
    rce = 4.0 * (1 - py)  # -sum_k p_k log(onehot_k) with log 0 := -4
    ce = -torch.log(py)
    assert build_loss("sce", sce_alpha=0.3, sce_beta=0.7)(logits, labels).item() == pytest.approx(
        (0.3 * ce + 0.7 * rce).mean().item(), rel=1e-5)
    nce = ce / (-torch.log(p).sum(1))
    assert build_loss("nce_rce", nce_alpha=2.0, nce_beta=0.5)(logits, labels).item() == pytest.approx(
        (2.0 * nce + 0.5 * rce).mean().item(), rel=1e-5)


def test_rce_a_option_reproduces_the_releases_clamped_one_hot():
    """The release's RCE: -sum_k p_k log(clamp(onehot_k, 1e-4, 1)), i.e. A = log 1e-4."""
    torch.manual_seed(4)
    logits, labels = torch.randn(7, 6), torch.randint(0, 6, (7,))
    p = torch.softmax(logits, 1)
    onehot = torch.nn.functional.one_hot(labels, 6).float().clamp(min=1e-4, max=1.0)
    release_rce = -(p * torch.log(onehot)).sum(1)
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    got = build_loss("sce", sce_alpha=0.1, sce_beta=1.0, rce_a=math.log(1e-4))(logits, labels)
    assert got.item() == pytest.approx((0.1 * ce + release_rce).mean().item(), rel=1e-5)
    assert build_loss("sce")(logits, labels).item() != pytest.approx(got.item(), rel=1e-3)  # default A = -4
    with pytest.raises(ValueError, match="RCE_A"):
        build_loss("nce_rce", rce_a=0.0)


def test_gce_q_checked_when_built():
    with pytest.raises(ValueError, match="GCE_Q"):
        build_loss("gce", gce_q=0.0)
