"""CLIP's text side: the tokenizer, L2 normalisation, and the text encoder that runs only the
positions the causal transformer needs. Works on OpenAI's ``clip.model.CLIP`` and on open_clip
models wrapped by ``ptnl.clip.open_clip_backbone`` (their ``text_spec`` says how the tower reads)."""
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ptnl.io import get_logger

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # openai-clip imports the deprecated pkg_resources
    import clip


log = get_logger(__name__)


@dataclass(frozen=True)
class TextSpec:
    """How a text tower reads a prompt: ``start_tokens`` special tokens before the text (1: CLIP's
    start-of-text, 0: SigLIP), ``causal`` attention or not, and where the feature is pooled
    (``argmax``: the largest id, CLIP's end-of-text; ``eos``: the first ``eos_id``; ``last``/``first``:
    a fixed position)."""
    context_length: int = 77
    start_tokens: int = 1
    causal: bool = True
    pool: str = "argmax"
    eos_id: int = -1

    @property
    def speed_paths_exact(self) -> bool:
        """Truncation and a shared prefix give the full computation's features only when no position
        sees a later one (causal mask) and the pooled position is told by the ids (not a fixed slot)."""
        return self.causal and self.pool in ("argmax", "eos")

    def pool_index(self, tokenized):
        """Index [N] of the pooled position of each row of token ids [N, L]."""
        if self.pool == "argmax":
            return tokenized.argmax(dim=-1)
        if self.pool == "eos":
            return (tokenized == self.eos_id).int().argmax(dim=-1)
        fixed = tokenized.shape[1] - 1 if self.pool == "last" else 0
        return torch.full(tokenized.shape[:1], fixed, dtype=torch.long, device=tokenized.device)


OPENAI_TEXT = TextSpec()


def text_spec(clip_model) -> TextSpec:
    """The ``TextSpec`` of a CLIP: its own (open_clip models) or OpenAI's."""
    return getattr(clip_model, "text_spec", OPENAI_TEXT)


def embed_dim(clip_model) -> int:
    """Dimension of the joint image-text feature space (the text projection's output)."""
    return int(getattr(clip_model, "embed_dim", None) or clip_model.text_projection.shape[1])


def logit_bias(clip_model):
    """The model's logit bias (SigLIP's sigmoid scores), or None: logits are
    ``exp(logit_scale) * cosine + logit_bias``; under a softmax over classes (CE, GCE) it cancels."""
    return getattr(clip_model, "logit_bias", None)


def normalize(x):
    """``x`` scaled to unit L2 norm along the last dimension (CLIP's cosine features)."""
    return x / x.norm(dim=-1, keepdim=True)


class _QuickGELU(torch.autograd.Function):
    """CLIP's QuickGELU, x * sigmoid(1.702 x), keeping only x for the backward pass (autograd
    would keep the sigmoid and the product too): the same values, a third of the MLP memory."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(1.702 * x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(1.702 * x)
        return grad * (s + 1.702 * x * s * (1 - s))


class TextEncoder(nn.Module):
    """CLIP's text tower on prompt embeddings. The transformer is causal and the feature is read
    at the end-of-text token, so positions after the last end-of-text token cannot change the
    result; with ``truncate`` they are not computed at all. When the first ``shared`` positions
    are the same in every prompt (SOS and a shared context), they are computed once, not once a
    class (``share_prefix``; see ``shared_prefix_forward``). Towers where this is not exact
    (non-causal, or pooled at a fixed position: SigLIP) always run the full sequence."""

    def __init__(self, clip_model, truncate=True, share_prefix=True):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype
        self.truncate = truncate
        self.share_prefix = share_prefix
        self.spec = text_spec(clip_model)
        self.batch_first = bool(getattr(clip_model.transformer, "batch_first", False))
        if not self.spec.speed_paths_exact:
            log.info("Text encoder: {} tower pooled at {}: truncation and shared-prefix speed paths off (exact only "
                     "for causal towers pooled at the end token)".format(
                         "causal" if self.spec.causal else "non-causal", self.spec.pool))

    def forward(self, prompts, tokenized_prompts, shared=0, groups=1):
        """Features [C, D] of prompts [C, L, D]; ``shared``: how many leading positions every
        prompt has in common (the caller's promise; 0 when unknown); ``groups`` > 1: the prompts are
        that many equal blocks (stacked runs, ``ptnl.trainers.stacked``), each block with its own
        common first ``shared`` positions."""
        eot = self.spec.pool_index(tokenized_prompts)
        exact = self.spec.speed_paths_exact
        if exact and self.share_prefix and self.truncate and 2 <= shared <= int(eot.min()):
            return shared_prefix_forward(self, prompts[::prompts.shape[0] // groups, :shared],
                                         prompts[:, shared:int(eot.max()) + 1], eot - shared)
        n = int(eot.max()) + 1 if self.truncate and exact else prompts.shape[1]
        x = prompts[:, :n] + self.positional_embedding[:n].type(self.dtype)
        if not self.batch_first:
            x = x.permute(1, 0, 2)  # NLD -> LND
        mask = causal_mask(n, n, x) if self.spec.causal else None
        for block in self.transformer.resblocks:
            h = block.ln_1(x)
            x = x + _scaled(block, "ls_1", block.attn(h, h, h, need_weights=False, attn_mask=mask)[0])
            x = x + _mlp(block, x)
        if not self.batch_first:
            x = x.permute(1, 0, 2)  # LND -> NLD
        return self.project(x[torch.arange(x.shape[0]), eot])

    def project(self, x):
        """Pooled hidden states [C, D] -> text features [C, E]: final norm, then the projection (a
        matrix, a linear layer with bias (SigLIP), or none)."""
        x = self.ln_final(x)
        if self.text_projection is None:
            return x
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x.type(self.dtype) @ self.text_projection


def causal_mask(n_query, n_key, like):
    """Additive mask [n_query, n_key] for the last ``n_query`` of ``n_key`` positions: query i
    (position n_key - n_query + i) sees keys up to its own position."""
    return torch.full((n_query, n_key), float("-inf"), device=like.device).triu_(
        n_key - n_query + 1).to(like.dtype)


def _scaled(block, name, x):
    """open_clip's optional LayerScale after a residual branch (identity where absent)."""
    return getattr(block, name)(x) if hasattr(block, name) else x


def _mlp(block, x):
    """A block's MLP branch; QuickGELU through the memory-saving function."""
    if type(block.mlp.gelu).__name__ == "QuickGELU":
        return _scaled(block, "ls_2", block.mlp.c_proj(_QuickGELU.apply(block.mlp.c_fc(block.ln_2(x)))))
    return _scaled(block, "ls_2", block.mlp(block.ln_2(x)))


def shared_prefix_forward(encoder, prefix, rest, eot):
    """CLIP's text transformer on C prompts that share their first P positions.

    ``prefix`` [1, P, D] is the common start ([G, P, D]: the start of each of G equal blocks of the
    C prompts, e.g. stacked runs), ``rest`` [C, S, D] each prompt's positions P..P+S-1,
    ``eot`` [C] the end-of-text index within ``rest``. Causality makes the prefix's hidden states
    independent of what follows, so they are computed once and every prompt attends to the same
    keys and values: the result equals the full transformer's, at the cost of P + C*S positions
    instead of C*(P+S) (for CoOp's 16-token context and short class names, about a quarter).
    The P + C*S rows go through each position-wise layer as one matrix (as many kernels as the
    ordinary path, which matters on a GPU); only attention is split. Gradients reach the prefix
    through its keys and values."""
    (g, p), (n_cls, s, dim) = prefix.shape[:2], rest.shape
    pos = encoder.positional_embedding.type(encoder.dtype)
    x = torch.cat([(prefix + pos[:p]).reshape(g * p, dim), (rest + pos[p:p + s]).reshape(n_cls * s, dim)])
    mask_p, mask_s = causal_mask(p, p, x), causal_mask(s, p + s, x)
    for block in encoder.transformer.resblocks:
        attn, heads = block.attn, block.attn.num_heads
        q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        split = lambda t: (t[:g * p].reshape(g, p, heads, -1).transpose(1, 2),  # noqa: E731
                           t[g * p:].reshape(n_cls, s, heads, -1).transpose(1, 2))
        (qp, qs), (kp, ks), (vp, vs) = split(q), split(k), split(v)
        keys = torch.cat([_per_prompt(kp, n_cls), ks], dim=2)
        values = torch.cat([_per_prompt(vp, n_cls), vs], dim=2)
        out_p = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask_p)
        out_s = F.scaled_dot_product_attention(qs, keys, values, attn_mask=mask_s)
        out = torch.cat([out_p.transpose(1, 2).reshape(g * p, dim), out_s.transpose(1, 2).reshape(n_cls * s, dim)])
        x = x + _scaled(block, "ls_1", attn.out_proj(out))
        x = x + _mlp(block, x)
    return encoder.project(x[g * p:].reshape(n_cls, s, dim)[torch.arange(n_cls), eot])


def _per_prompt(t, n):
    """[G, ...] -> [n, ...]: each block's row repeated for its n // G prompts (G = 1: a view)."""
    return t.unsqueeze(1).expand(t.shape[0], n // t.shape[0], *t.shape[1:]).reshape(n, *t.shape[1:])


def tokenize(texts, clip_model=None):
    """Token ids [len(texts), L] of ``texts`` by the tokenizer of ``clip_model`` (its own for open_clip
    models; OpenAI's, L = 77, for OpenAI's CLIP or when None)."""
    own = getattr(clip_model, "tokenize", None)
    return own(texts) if own is not None else clip.tokenize(texts)


def count_tokens(text, clip_model=None):
    """Number of tokens ``text`` takes in a prompt of ``clip_model`` (without start/end tokens)."""
    own = getattr(clip_model, "count_tokens", None)
    return own(text) if own is not None else len(_openai_tokenizer().encode(text))


_OPENAI_TOKENIZER = []


def _openai_tokenizer():
    if not _OPENAI_TOKENIZER:
        from clip.simple_tokenizer import SimpleTokenizer
        _OPENAI_TOKENIZER.append(SimpleTokenizer())
    return _OPENAI_TOKENIZER[0]
