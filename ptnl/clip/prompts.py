"""Prompt learners: CoOp's learnable context around fixed class-name tokens."""
import torch
import torch.nn as nn

from ptnl.clip.heads import PromptedCLIP, TextClassifier
from ptnl.clip.templates import class_text
from ptnl.clip.text import count_tokens, logit_bias, normalize, text_spec, tokenize
from ptnl.errors import ConfigError
from ptnl.io import get_logger

log = get_logger(__name__)

POSITIONS = ("end", "middle", "front")


def _bpe_len(text, clip_model=None):
    """Number of tokens of ``text`` (without start/end tokens) by ``clip_model``'s tokenizer (OpenAI's BPE
    when None)."""
    return count_tokens(text, clip_model)


def prompt_texts(classnames, prefix):
    """The text of each class prompt: ``"<prefix> <class name>."`` (underscores become spaces)."""
    names = [class_text(name) for name in classnames]
    return [" ".join(p for p in (prefix, name) if p) + "." for name in names], names


def assemble_prompts(prefix, ctx, suffix, name_lens, position="end"):
    """Token embeddings [C, L, D] of the prompts of C classes.

    ``prefix`` [C, 1, D] is the start-of-text token ([C, 0, D] for tokenizers without one), ``ctx`` [C, n, D] the context, ``suffix``
    [C, L-1-n, D] the class-name tokens followed by ".", end-of-text and padding; ``name_lens[i]``
    is the token count of class i's name. ``end``: SOS ctx name . EOS; ``front``: SOS name ctx . EOS;
    ``middle``: SOS ctx[:n//2] name ctx[n//2:] . EOS.
    """
    if position == "end":
        return torch.cat([prefix, ctx, suffix], dim=1)
    if position not in POSITIONS:
        raise ConfigError("CLASS_TOKEN_POSITION must be one of {}, got {!r}".format(POSITIONS, position))
    half = ctx.shape[1] // 2
    prompts = []
    for i, n in enumerate(name_lens):
        name, rest = suffix[i:i + 1, :n], suffix[i:i + 1, n:]
        if position == "middle":
            parts = [prefix[i:i + 1], ctx[i:i + 1, :half], name, ctx[i:i + 1, half:], rest]
        else:
            parts = [prefix[i:i + 1], name, ctx[i:i + 1], rest]
        prompts.append(torch.cat(parts, dim=1))
    return torch.cat(prompts, dim=0)


CTX_INIT_MODES = ("coop", "tokens")


def ctx_init_length(ctx_init: str, mode: str = "coop", clip_model=None) -> int:
    """How many context vectors CTX_INIT gives. ``coop``: its word count, as CoOp (the first that
    many BPE tokens are learned; a word split into several tokens leaves the last ones fixed in the
    prompt, e.g. "itap of a": 3 learned, the 4th token fixed). ``tokens``: every token (by
    ``clip_model``'s tokenizer)."""
    return len(ctx_init.split()) if mode == "coop" else _bpe_len(ctx_init, clip_model)


class PromptLearner(nn.Module):
    """CoOp's context vectors: shared ([n, D]) or class-specific ([C, n, D]), initialised from
    N(0, 0.02) or from the embeddings of ``ctx_init`` words (``ctx_init_mode``: CoOp's word count
    and one shared context, or every BPE token and per-class copies under ``csc``).

    ``learn_ctx`` makes the context trainable (PTNL); ``learn_names`` makes the class-name token
    embeddings trainable too (Full-Prompt-Tuning), or alone with a fixed ``ctx_init`` template
    (CLS-Tuning). Start, end and padding tokens always stay fixed. The prompt follows the model's
    tokenizer (``ptnl.clip.text.TextSpec``): the context starts after the start token, or at position
    0 where there is none (SigLIP)."""

    def __init__(self, classnames, clip_model, n_ctx=16, ctx_init="", csc=False, position="end",
                 learn_ctx=True, learn_names=False, ctx_init_mode="coop"):
        super().__init__()
        if ctx_init_mode not in CTX_INIT_MODES:
            raise ConfigError("CTX_INIT_MODE must be one of {}, got {!r}".format(CTX_INIT_MODES, ctx_init_mode))
        if position not in POSITIONS:
            raise ConfigError("CLASS_TOKEN_POSITION must be one of {}, got {!r}".format(POSITIONS, position))
        if n_ctx < 0:
            raise ConfigError("N_CTX must be >= 0, got {}".format(n_ctx))
        dtype = clip_model.dtype
        dim = clip_model.ln_final.weight.shape[0]
        n_cls = len(classnames)
        start = text_spec(clip_model).start_tokens
        ctx_init = ctx_init.replace("_", " ").strip()
        if ctx_init:
            n_ctx = ctx_init_length(ctx_init, ctx_init_mode, clip_model)
            if learn_names and n_ctx != _bpe_len(ctx_init, clip_model):
                raise ConfigError("CTX_INIT {!r} has {} words but {} BPE tokens: with learned class names set "
                                  "TRAINER.PTNL.CTX_INIT_MODE tokens".format(ctx_init, n_ctx,
                                                                             _bpe_len(ctx_init, clip_model)))
            with torch.no_grad():
                emb = clip_model.token_embedding(tokenize([ctx_init], clip_model)).type(dtype)
            init = emb[0, start:start + n_ctx]
            per_class = csc and ctx_init_mode == "tokens"  # CoOp keeps one shared context
            ctx = init.unsqueeze(0).repeat(n_cls, 1, 1) if per_class else init.clone()
            prefix_text = ctx_init
        else:
            shape = (n_cls, n_ctx, dim) if csc else (n_ctx, dim)
            ctx = torch.empty(*shape, dtype=dtype)
            nn.init.normal_(ctx, std=0.02)
            prefix_text = " ".join(["X"] * n_ctx)
            if _bpe_len(prefix_text, clip_model) != n_ctx:
                raise ConfigError("The tokenizer of this backbone does not read the placeholder \"X\" as one token "
                                  "(N_CTX {} gave {} tokens): set TRAINER.PTNL.CTX_INIT".format(
                                      n_ctx, _bpe_len(prefix_text, clip_model)))
        log.info('Initial context: "{}"'.format(prefix_text))
        log.info("Number of context words (tokens): {}".format(n_ctx))
        self.ctx = nn.Parameter(ctx, requires_grad=learn_ctx)
        texts, names = prompt_texts(classnames, prefix_text)
        tokenized = tokenize(texts, clip_model)
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized).type(dtype)
        self.register_buffer("token_prefix", embedding[:, :start, :])
        self.register_buffer("token_suffix", embedding[:, start + n_ctx:, :])
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        self.n_cls, self.n_ctx, self.position = n_cls, n_ctx, position
        self.name_lens = [_bpe_len(name, clip_model) for name in names]
        self.start = start
        self.prompt_texts = texts
        self.learn_names = learn_names
        if learn_names:  # [C, Lmax, D]: row i's first name_lens[i] positions are class i's name
            lmax = max(self.name_lens)
            self.name_emb = nn.Parameter(embedding[:, start + n_ctx:start + n_ctx + lmax, :].clone())
            mask = torch.arange(lmax)[None, :] < torch.tensor(self.name_lens)[:, None]
            self.register_buffer("name_mask", mask[..., None], persistent=False)

    def suffix(self):
        """Class-name tokens, ".", end-of-text and padding: [C, L-start-n_ctx, D]."""
        if not self.learn_names:
            return self.token_suffix
        lmax = self.name_emb.shape[1]
        head = torch.where(self.name_mask, self.name_emb, self.token_suffix[:, :lmax])
        return torch.cat([head, self.token_suffix[:, lmax:]], dim=1)

    def shared_positions(self):
        """How many leading prompt positions are the same for every class: the start token (if the
        tokenizer has one), and the context before the class name when one context is shared
        (``end``: all of it, ``middle``: its first half)."""
        start = getattr(self, "start", 1)
        if self.ctx.dim() == 3:
            return start
        return start + {"end": self.n_ctx, "middle": self.n_ctx // 2, "front": 0}[self.position]

    def forward(self):
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return assemble_prompts(self.token_prefix, ctx, self.suffix(), self.name_lens, self.position)


class PromptCLIP(TextClassifier, PromptedCLIP):
    """Frozen CLIP image and text encoders around a prompt learner; logits are scaled cosines."""

    def __init__(self, prompt_learner, clip_model):
        super().__init__(prompt_learner, clip_model)
        self.logit_bias = logit_bias(clip_model)

    def text_features(self):
        learner = self.prompt_learner
        return normalize(self.text_encoder(learner(), learner.tokenized_prompts, learner.shared_positions()))
