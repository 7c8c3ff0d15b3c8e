"""CLIP's text side: the tokenizer, L2 normalisation, and the text encoder that runs only the
positions the causal transformer needs."""
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # openai-clip imports the deprecated pkg_resources
    import clip


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
    class (``share_prefix``; see ``shared_prefix_forward``)."""

    def __init__(self, clip_model, truncate=True, share_prefix=True):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype
        self.truncate = truncate
        self.share_prefix = share_prefix

    def forward(self, prompts, tokenized_prompts, shared=0):
        """Features [C, D] of prompts [C, L, D]; ``shared``: how many leading positions every
        prompt has in common (the caller's promise; 0 when unknown)."""
        eot = tokenized_prompts.argmax(dim=-1)
        if self.share_prefix and self.truncate and 2 <= shared <= int(eot.min()):
            return shared_prefix_forward(self, prompts[:1, :shared], prompts[:, shared:int(eot.max()) + 1],
                                         eot - shared)
        n = int(eot.max()) + 1 if self.truncate else prompts.shape[1]
        x = prompts[:, :n] + self.positional_embedding[:n].type(self.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        mask = causal_mask(n, n, x)
        for block in self.transformer.resblocks:
            h = block.ln_1(x)
            x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
            x = x + _mlp(block, x)
        x = x.permute(1, 0, 2)  # LND -> NLD
        return self.project(x[torch.arange(x.shape[0]), eot])

    def project(self, x):
        """End-of-text hidden states [C, D] -> text features [C, E]."""
        return self.ln_final(x).type(self.dtype) @ self.text_projection


def causal_mask(n_query, n_key, like):
    """Additive mask [n_query, n_key] for the last ``n_query`` of ``n_key`` positions: query i
    (position n_key - n_query + i) sees keys up to its own position."""
    return torch.full((n_query, n_key), float("-inf"), device=like.device).triu_(
        n_key - n_query + 1).to(like.dtype)


def _mlp(block, x):
    return block.mlp.c_proj(_QuickGELU.apply(block.mlp.c_fc(block.ln_2(x))))


def shared_prefix_forward(encoder, prefix, rest, eot):
    """CLIP's text transformer on C prompts that share their first P positions.

    ``prefix`` [1, P, D] is the common start, ``rest`` [C, S, D] each prompt's positions P..P+S-1,
    ``eot`` [C] the end-of-text index within ``rest``. Causality makes the prefix's hidden states
    independent of what follows, so they are computed once and every prompt attends to the same
    keys and values: the result equals the full transformer's, at the cost of P + C*S positions
    instead of C*(P+S) (for CoOp's 16-token context and short class names, about a quarter).
    The P + C*S rows go through each position-wise layer as one matrix (as many kernels as the
    ordinary path, which matters on a GPU); only attention is split. Gradients reach the prefix
    through its keys and values."""
    p, (n_cls, s, dim) = prefix.shape[1], rest.shape
    pos = encoder.positional_embedding.type(encoder.dtype)
    x = torch.cat([(prefix + pos[:p])[0], (rest + pos[p:p + s]).reshape(n_cls * s, dim)])  # [P + C*S, D]
    mask_p, mask_s = causal_mask(p, p, x), causal_mask(s, p + s, x)
    for block in encoder.transformer.resblocks:
        attn, heads = block.attn, block.attn.num_heads
        q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        split = lambda t: (t[:p].reshape(1, p, heads, -1).transpose(1, 2),  # noqa: E731
                           t[p:].reshape(n_cls, s, heads, -1).transpose(1, 2))
        (qp, qs), (kp, ks), (vp, vs) = split(q), split(k), split(v)
        keys = torch.cat([kp.expand(n_cls, -1, -1, -1), ks], dim=2)
        values = torch.cat([vp.expand(n_cls, -1, -1, -1), vs], dim=2)
        out_p = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask_p)
        out_s = F.scaled_dot_product_attention(qs, keys, values, attn_mask=mask_s)
        out = torch.cat([out_p.transpose(1, 2).reshape(p, dim), out_s.transpose(1, 2).reshape(n_cls * s, dim)])
        x = x + attn.out_proj(out)
        x = x + _mlp(block, x)
    return encoder.project(x[p:].reshape(n_cls, s, dim)[torch.arange(n_cls), eot])


def tokenize(texts):
    """CLIP's tokenizer: [len(texts), 77] token ids."""
    return clip.tokenize(texts)
