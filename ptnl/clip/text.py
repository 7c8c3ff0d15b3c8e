"""CLIP's text side: the tokenizer, L2 normalisation, and the text encoder that runs only the
positions the causal transformer needs."""
import warnings

import torch
import torch.nn as nn

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
    result; with ``truncate`` they are not computed at all."""

    def __init__(self, clip_model, truncate=True):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype
        self.truncate = truncate

    def forward(self, prompts, tokenized_prompts):
        eot = tokenized_prompts.argmax(dim=-1)
        n = int(eot.max()) + 1 if self.truncate else prompts.shape[1]
        x = prompts[:, :n] + self.positional_embedding[:n].type(self.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        mask = torch.full((n, n), float("-inf"), device=x.device).triu_(1).to(x.dtype)
        for block in self.transformer.resblocks:
            h = block.ln_1(x)
            x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
            h = _QuickGELU.apply(block.mlp.c_fc(block.ln_2(x)))
            x = x + block.mlp.c_proj(h)
        x = x.permute(1, 0, 2)  # LND -> NLD
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


def tokenize(texts):
    """CLIP's tokenizer: [len(texts), 77] token ids."""
    return clip.tokenize(texts)
