"""ptnl.clip.prompts (CoOp prompt learner) and ptnl.clip.text.TextEncoder, on small real-class CLIPs
saved to a file and loaded through the users' loader."""
import copy

import pytest
import torch

from ptnl.clip import TextEncoder, load_clip, tokenize
from ptnl.clip.small import small_clip_state_dict
from ptnl.clip.prompts import POSITIONS, PromptCLIP, PromptLearner, assemble_prompts, prompt_texts

# name token counts 1, 2, 3, 4 ("x-ray machine" -> x, -, ray, machine)
CLASSNAMES = ["cat", "sea_lion", "aardvark", "x-ray machine"]
NAMES = [n.replace("_", " ") for n in CLASSNAMES]
NAME_LENS = [1, 2, 3, 4]
EOT_ID = 49407


@pytest.fixture(scope="module", params=["vit", "rn"])
def clip_model(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip-{}.pt".format(request.param)
    torch.save(small_clip_state_dict(request.param), str(path))
    model = load_clip(str(path))
    for p in model.parameters():
        p.requires_grad_(False)
    model.kind = request.param
    return model


@pytest.fixture(scope="module")
def vit_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clipvit") / "clip-vit.pt"
    torch.save(small_clip_state_dict("vit"), str(path))
    return load_clip(str(path))


def embed(clip_model, texts):
    with torch.no_grad():
        return clip_model.token_embedding(tokenize(texts)).type(clip_model.dtype)


def learner(clip_model, seed=0, **kw):
    torch.manual_seed(seed)
    return PromptLearner(CLASSNAMES, clip_model, **kw)


def set_ctx_to_word(pl, clip_model, word="X"):
    """Make the context the token embedding of ``word`` (one BPE token), so prompts are plain
    token embeddings of a text."""
    vec = embed(clip_model, [word])[0, 1]
    with torch.no_grad():
        pl.ctx.copy_(vec.expand_as(pl.ctx))


def ordered_texts(n_ctx, position, word="X"):
    """The texts whose token embeddings the prompts equal when every ctx vector is ``word``."""
    ctx = [word] * n_ctx
    half = n_ctx // 2
    out = []
    for name in NAMES:
        if position == "end":
            words = ctx + [name]
        elif position == "front":
            words = [name] + ctx
        else:
            words = ctx[:half] + [name] + ctx[half:]
        out.append(" ".join(words) + ".")
    return out


def name_embeddings(clip_model):
    emb = embed(clip_model, NAMES)
    return [emb[i, 1:1 + n] for i, n in enumerate(NAME_LENS)]


# ---------------------------------------------------------------------------- tokens and texts
def test_name_lens_match_tokenizer(vit_clip):
    pl = learner(vit_clip, n_ctx=4)
    assert pl.name_lens == NAME_LENS
    tok = tokenize(NAMES)
    assert (tok.argmax(-1) - 1).tolist() == NAME_LENS


@pytest.mark.parametrize("n_ctx", (0, 1, 4, 16))
def test_eot_position(vit_clip, n_ctx):
    pl = learner(vit_clip, n_ctx=n_ctx, position="end")
    tok = pl.tokenized_prompts
    eot = tok.argmax(-1)
    assert eot.tolist() == [1 + n_ctx + n + 1 for n in NAME_LENS]  # SOS ctx name "." EOT
    assert (tok[torch.arange(len(tok)), eot] == EOT_ID).all()
    assert (tok[:, 0] == EOT_ID - 1).all()  # SOS
    assert torch.equal(tok, tokenize(pl.prompt_texts))


def test_prompt_texts():
    texts, names = prompt_texts(CLASSNAMES, "X X")
    assert names == NAMES
    assert texts == ["X X cat.", "X X sea lion.", "X X aardvark.", "X X x-ray machine."]
    texts, _ = prompt_texts(CLASSNAMES, "")
    assert texts == ["cat.", "sea lion.", "aardvark.", "x-ray machine."]


# ---------------------------------------------------------------------------- assembly
@pytest.mark.parametrize("csc", (False, True))
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("n_ctx", (4, 5))
def test_prompt_layout(vit_clip, position, csc, n_ctx):
    pl = learner(vit_clip, n_ctx=n_ctx, csc=csc, position=position)
    prompts = pl()
    C, D = len(CLASSNAMES), vit_clip.ln_final.weight.shape[0]
    assert prompts.shape == (C, 77, D)
    ctx = pl.ctx if csc else pl.ctx.unsqueeze(0).expand(C, -1, -1)
    names = name_embeddings(vit_clip)
    sos = embed(vit_clip, ["."])[0, 0]
    rest_texts = embed(vit_clip, ["."])[0, 1:]  # ".", EOT, padding
    half = n_ctx // 2
    for i, L in enumerate(NAME_LENS):
        p = prompts[i]
        assert torch.equal(p[0], sos)
        if position == "end":
            assert torch.equal(p[1:1 + n_ctx], ctx[i])
            assert torch.equal(p[1 + n_ctx:1 + n_ctx + L], names[i])
        elif position == "front":
            assert torch.equal(p[1:1 + L], names[i])
            assert torch.equal(p[1 + L:1 + L + n_ctx], ctx[i])
        else:
            assert torch.equal(p[1:1 + half], ctx[i, :half])
            assert torch.equal(p[1 + half:1 + half + L], names[i])
            assert torch.equal(p[1 + half + L:1 + n_ctx + L], ctx[i, half:])
        # then ".", EOT and padding, exactly as in any tokenized text
        assert torch.equal(p[1 + n_ctx + L:], rest_texts[:77 - 1 - n_ctx - L])


@pytest.mark.parametrize("csc", (False, True))
@pytest.mark.parametrize("position", POSITIONS)
def test_prompts_equal_token_embedding_of_ordered_text(vit_clip, position, csc):
    pl = learner(vit_clip, n_ctx=4, csc=csc, position=position)
    set_ctx_to_word(pl, vit_clip)
    assert torch.equal(pl(), embed(vit_clip, ordered_texts(4, position)))


def test_assemble_prompts_direct():
    C, L, D, n = 3, 12, 5, 4
    prefix = torch.randn(C, 1, D)
    ctx = torch.randn(C, n, D)
    suffix = torch.randn(C, L - 1 - n, D)
    name_lens = [1, 2, 3]
    end = assemble_prompts(prefix, ctx, suffix, name_lens, "end")
    assert torch.equal(end, torch.cat([prefix, ctx, suffix], 1))
    front = assemble_prompts(prefix, ctx, suffix, name_lens, "front")
    middle = assemble_prompts(prefix, ctx, suffix, name_lens, "middle")
    for i, k in enumerate(name_lens):
        assert torch.equal(front[i], torch.cat([prefix[i], suffix[i, :k], ctx[i], suffix[i, k:]]))
        assert torch.equal(middle[i], torch.cat([prefix[i], ctx[i, :2], suffix[i, :k], ctx[i, 2:],
                                                 suffix[i, k:]]))
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION"):
        assemble_prompts(prefix, ctx, suffix, name_lens, "left")


# ---------------------------------------------------------------------------- context shapes / init
@pytest.mark.parametrize("csc", (False, True))
def test_ctx_shape(vit_clip, csc):
    D = vit_clip.ln_final.weight.shape[0]
    pl = learner(vit_clip, n_ctx=6, csc=csc)
    assert pl.n_ctx == 6
    assert tuple(pl.ctx.shape) == ((len(CLASSNAMES), 6, D) if csc else (6, D))
    assert pl.ctx.requires_grad
    assert [n for n, _ in pl.named_parameters()] == ["ctx"]
    assert 0.01 < pl.ctx.std().item() < 0.03  # N(0, 0.02)
    assert pl.prompt_texts[0] == "X X X X X X cat."


def test_ctx_init_is_deterministic_under_manual_seed(vit_clip):
    a, b = learner(vit_clip, seed=3, n_ctx=4), learner(vit_clip, seed=3, n_ctx=4)
    assert torch.equal(a.ctx, b.ctx)
    assert not torch.equal(a.ctx, learner(vit_clip, seed=4, n_ctx=4).ctx)


@pytest.mark.parametrize("mode", ("coop", "tokens"))
@pytest.mark.parametrize("csc", (False, True))
@pytest.mark.parametrize("ctx_init", ("a photo of a", "a_photo_of_a", " a photo of a "))
def test_ctx_init_words(vit_clip, ctx_init, csc, mode):
    pl = learner(vit_clip, n_ctx=16, ctx_init=ctx_init, csc=csc, ctx_init_mode=mode)
    assert pl.n_ctx == 4
    words = embed(vit_clip, ["a photo of a"])[0, 1:5]
    if csc and mode == "tokens":  # per-class copies
        assert pl.ctx.shape == (len(CLASSNAMES), 4, words.shape[-1])
        for i in range(len(CLASSNAMES)):
            assert torch.equal(pl.ctx[i], words)
    else:  # CoOp: one shared context from CTX_INIT, CSC or not
        assert torch.equal(pl.ctx, words)
    assert pl.prompt_texts == ["a photo of a " + n + "." for n in NAMES]
    # the initial prompts are exactly the embeddings of the template text
    assert torch.equal(pl(), embed(vit_clip, pl.prompt_texts))


def test_ctx_init_counts_words_as_coop(vit_clip):
    """CoOp: n_ctx = len(ctx_init.split(" ")); "itap" is two BPE tokens, so "itap of a" learns 3
    vectors and the 4th token stays in the fixed part of the prompt."""
    from ptnl.clip.prompts import _bpe_len
    assert _bpe_len("itap of a") == 4
    pl = learner(vit_clip, n_ctx=16, ctx_init="itap of a")
    full = embed(vit_clip, ["itap of a"])[0]
    assert pl.n_ctx == 3 and torch.equal(pl.ctx, full[1:4])
    assert torch.equal(pl.token_suffix[0, 0], full[4])  # the 4th token is fixed
    assert torch.equal(pl(), embed(vit_clip, pl.prompt_texts))
    ours = learner(vit_clip, n_ctx=16, ctx_init="itap of a", ctx_init_mode="tokens")
    assert ours.n_ctx == 4 and torch.equal(ours.ctx, full[1:5])
    with pytest.raises(ValueError, match="CTX_INIT_MODE"):
        learner(vit_clip, ctx_init="a photo", ctx_init_mode="bpe")


@pytest.mark.parametrize("csc", (False, True))
@pytest.mark.parametrize("position", POSITIONS)
def test_zero_context(vit_clip, position, csc):
    pl = learner(vit_clip, n_ctx=0, csc=csc, position=position)
    assert pl.n_ctx == 0 and pl.ctx.numel() == 0
    assert pl.prompt_texts == [n + "." for n in NAMES]
    assert (pl.tokenized_prompts.argmax(-1) == torch.tensor(NAME_LENS) + 2).all()
    assert torch.equal(pl(), embed(vit_clip, pl.prompt_texts))
    enc = TextEncoder(vit_clip)(pl(), pl.tokenized_prompts)
    torch.testing.assert_close(enc, vit_clip.encode_text(pl.tokenized_prompts), atol=1e-5, rtol=0)


def test_invalid_arguments(vit_clip):
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION"):
        learner(vit_clip, n_ctx=4, position="left")
    with pytest.raises(ValueError, match="N_CTX"):
        learner(vit_clip, n_ctx=-1)


# ---------------------------------------------------------------------------- text encoder
@pytest.mark.parametrize("csc", (False, True))
@pytest.mark.parametrize("position", POSITIONS)
def test_text_encoder_matches_encode_text(clip_model, position, csc):
    pl = learner(clip_model, n_ctx=4, csc=csc, position=position)
    set_ctx_to_word(pl, clip_model)
    ref_tok = tokenize(ordered_texts(4, position))
    prompts = pl()
    with torch.no_grad():
        short = TextEncoder(clip_model, truncate=True)(prompts, pl.tokenized_prompts)
        full = TextEncoder(clip_model, truncate=False)(prompts, pl.tokenized_prompts)
        ref = clip_model.encode_text(ref_tok)
    assert short.dtype == torch.float32 and short.shape == ref.shape == (len(CLASSNAMES), 32)
    torch.testing.assert_close(short, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(short, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(full, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("csc", (False, True))
@pytest.mark.parametrize("position", POSITIONS)
def test_text_encoder_truncation_is_exact_for_learned_context(clip_model, position, csc):
    pl = learner(clip_model, seed=1, n_ctx=5, csc=csc, position=position)
    with torch.no_grad():
        pl.ctx.normal_(std=0.5)
        short = TextEncoder(clip_model, truncate=True)(pl(), pl.tokenized_prompts)
        full = TextEncoder(clip_model, truncate=False)(pl(), pl.tokenized_prompts)
    torch.testing.assert_close(short, full, atol=1e-5, rtol=0)


def first_block_inputs(clip_model, *runs):
    """(rows, batch) of the first text block's LayerNorm input during each of ``runs``."""
    seen = []
    handle = clip_model.transformer.resblocks[0].ln_1.register_forward_hook(
        lambda mod, inp, out: seen.append(tuple(inp[0].shape[:2])))
    try:
        with torch.no_grad():
            for run in runs:
                run()
    finally:
        handle.remove()
    return seen


def test_text_encoder_runs_only_needed_positions(vit_clip):
    pl = learner(vit_clip, n_ctx=4)
    seen = first_block_inputs(vit_clip, lambda: TextEncoder(vit_clip, truncate=True)(pl(), pl.tokenized_prompts),
                              lambda: TextEncoder(vit_clip, truncate=False)(pl(), pl.tokenized_prompts))
    assert [rows for rows, _ in seen] == [int(pl.tokenized_prompts.argmax(-1).max()) + 1, 77]


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("learn_names", (False, True))
@pytest.mark.parametrize("position", ("end", "middle"))
def test_shared_prefix_equals_the_full_transformer(clip_model, position, learn_names, device):
    """Computing the prompts' common start once (SOS + the shared context) gives the features and
    the context's gradient of the transformer run on every whole prompt (the causal mask makes the
    prefix's states independent of the class)."""
    if device != "cpu":  # a copy: the module's fixture stays on the CPU for the other tests
        clip_model = copy.deepcopy(clip_model)
    pl = learner(clip_model, seed=1, n_ctx=6, position=position, learn_names=learn_names)
    with torch.no_grad():
        pl.ctx.normal_(std=0.5)
    pl.ctx.requires_grad_(True)
    pl, enc = pl.to(device), TextEncoder(clip_model).to(device)
    assert pl.shared_positions() == 1 + (6 if position == "end" else 3)
    out = {}
    for share in (True, False):
        enc.share_prefix = share
        pl.ctx.grad = None
        f = enc(pl(), pl.tokenized_prompts, pl.shared_positions())
        (f.square().sum() + 3 * f[:, 0].sum()).backward()
        out[share] = f.detach(), pl.ctx.grad.clone()
    torch.testing.assert_close(out[True][0], out[False][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[True][1], out[False][1], atol=1e-4, rtol=1e-4)
    assert out[True][1].abs().max() > 1e-3  # the gradient reaches the context through keys and values


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_shared_prefix_in_half_precision_on_cuda(vit_clip, dtype):
    """fp16 (PREC fp16's weights) and bf16 (autocast) on CUDA: the shared path stays within the
    half-precision rounding of the full one."""
    vit_clip = copy.deepcopy(vit_clip)
    pl = learner(vit_clip, seed=2, n_ctx=8).cuda()
    enc = TextEncoder(vit_clip).cuda()
    feats = {}
    for share in (True, False):
        enc.share_prefix = share
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
            feats[share] = enc(pl(), pl.tokenized_prompts, pl.shared_positions()).float()
    torch.testing.assert_close(feats[True], feats[False], atol=2e-2, rtol=2e-2)


def test_shared_prefix_runs_the_prefix_once(vit_clip):
    pl = learner(vit_clip, n_ctx=4)
    encode = lambda: TextEncoder(vit_clip)(pl(), pl.tokenized_prompts, pl.shared_positions())  # noqa: E731
    n = int(pl.tokenized_prompts.argmax(-1).max()) + 1
    # SOS + 4 context tokens once, the rest per class
    assert [rows for rows, _ in first_block_inputs(vit_clip, encode)] == [5 + len(CLASSNAMES) * (n - 5)]


@pytest.mark.parametrize("kw", ({"csc": True}, {"position": "front"}))
def test_nothing_shared_beyond_the_start_token(vit_clip, kw):
    """Class-specific contexts and class-first prompts share only SOS: the ordinary path runs."""
    pl = learner(vit_clip, n_ctx=4, **kw)
    assert pl.shared_positions() == 1
    encode = lambda: TextEncoder(vit_clip)(pl(), pl.tokenized_prompts, pl.shared_positions())  # noqa: E731
    assert first_block_inputs(vit_clip, encode) == [(int(pl.tokenized_prompts.argmax(-1).max()) + 1, len(CLASSNAMES))]


def test_text_encoder_on_plain_texts(clip_model):
    texts = ["a photo of a cat.", "x", "a much longer sentence about a sea lion on a rock."]
    tok = tokenize(texts)
    with torch.no_grad():
        out = TextEncoder(clip_model)(clip_model.token_embedding(tok), tok)
        ref = clip_model.encode_text(tok)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------- PromptCLIP
@pytest.mark.parametrize("position", POSITIONS)
def test_prompt_clip_logits(clip_model, position):
    pl = learner(clip_model, n_ctx=4, csc=position == "middle", position=position)
    model = PromptCLIP(pl, clip_model)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits = model(images)
    assert logits.shape == (3, len(CLASSNAMES))
    assert torch.isfinite(logits).all()
    # with every ctx vector the embedding of "X", the logits are CLIP's own on those texts
    set_ctx_to_word(pl, clip_model)
    with torch.no_grad():
        ref, _ = clip_model(images, tokenize(ordered_texts(4, position)))
        got = model(images)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-5)


def test_prompt_clip_gradients_reach_context_through_frozen_clip(clip_model):
    pl = learner(clip_model, n_ctx=4)
    model = PromptCLIP(pl, clip_model)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model(images).logsumexp(-1).sum().backward()
    assert pl.ctx.grad is not None and pl.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip_model.parameters())
    pl.ctx.grad = None
