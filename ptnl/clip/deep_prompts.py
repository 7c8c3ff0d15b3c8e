"""Deep prompts (MaPLe, PromptSRC): the real ``clip.model`` CLIP's text and vision transformers run
block by block, with learned tokens put in at the input and replaced before chosen blocks.

No CLIP code is copied or modified: the encoders below call the model's own modules (token and
patch embeddings, each ``ResidualAttentionBlock``, the final norms and projections) in the order
``CLIP.encode_text`` and ``VisionTransformer.forward`` call them, and only insert or replace prompt
tokens between blocks. With no prompts they give exactly what the model gives.
"""
import copy
from typing import List, NamedTuple, Optional, Sequence

import torch
import torch.nn as nn

from ptnl.clip.heads import PromptedCLIP
from ptnl.clip.prompts import PromptLearner, ctx_init_length
from ptnl.clip.templates import class_prompts, class_text
from ptnl.clip.text import TextEncoder, normalize, tokenize
from ptnl.errors import ConfigError
from ptnl.io import get_logger

log = get_logger(__name__)

# PromptSRC's text-teacher templates: CLIP's 80 ImageNet templates (OpenAI's prompt-engineering
# notebook) cut to their first 60, with "a photo of a {}." moved to the front (the release's list;
# tests/test_learners_deep.py checks it against open_clip's copy of CLIP's list where installed).
PROMPTSRC_TEMPLATES = [
    "a photo of a {}.", "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.",
    "the embroidered {}.", "a photo of a hard to see {}.", "a bright photo of a {}.", "a photo of a clean {}.",
    "a photo of a dirty {}.", "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.",
    "the plastic {}.", "a photo of the cool {}.", "a close-up photo of a {}.", "a black and white photo of the {}.",
    "a painting of the {}.", "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.",
    "a bright photo of the {}.", "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.", "a photo of the {}.",
    "a good photo of the {}.", "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.",
    "a doodle of a {}.", "a close-up photo of the {}.", "the origami {}.", "the {} in a video game.",
    "a sketch of a {}.", "a doodle of the {}.", "a origami {}.", "a low resolution photo of a {}.",
    "the toy {}.", "a rendition of the {}.", "a photo of the clean {}.", "a photo of a large {}.",
    "a rendition of a {}.", "a photo of a nice {}.", "a photo of a weird {}.", "a blurry photo of a {}.",
    "a cartoon {}.", "art of a {}.", "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.",
    "itap of the {}.",
]


# ----------------------------------------------------------------------------- encoders
def _block(block, x, mask):
    """One ``ResidualAttentionBlock`` on ``x`` [L, N, D]: the block's own forward, or (``mask``
    given: the text tower run on fewer than its 77 positions) the same computation with the
    block's causal mask cut to the positions present."""
    if mask is None:
        return block(x)
    h = block.ln_1(x)
    x = x + block.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
    return x + block.mlp(block.ln_2(x))


def _replaced(x, tokens, start, stop):
    """``x`` [L, N, D] with positions ``start:stop`` replaced by ``tokens`` [n, D] (every sequence)."""
    t = tokens.to(x.dtype).unsqueeze(1).expand(-1, x.shape[1], -1)
    return torch.cat([x[:start], t, x[stop:]], dim=0)


def deep_text_features(encoder: TextEncoder, prompts: torch.Tensor, tokenized: torch.Tensor,
                       deep: Sequence[torch.Tensor] = (), start: int = 1) -> torch.Tensor:
    """Text features [C, E] of prompt embeddings [C, L, D] through CLIP's text tower, where before
    block ``i`` (1 <= i <= len(deep)) positions ``start .. start+n-1`` of every prompt are replaced
    by ``deep[i-1]`` [n, D] (MaPLe's and PromptSRC's deep language prompts). With ``encoder.truncate``
    only the positions up to the last end-of-text token run (the tower is causal and the prompt
    positions lie before it, so the features are the same)."""
    eot = tokenized.argmax(dim=-1)
    n = int(eot.max()) + 1 if encoder.truncate else prompts.shape[1]
    x = (prompts[:, :n] + encoder.positional_embedding[:n].type(encoder.dtype)).permute(1, 0, 2)  # NLD -> LND
    blocks = encoder.transformer.resblocks
    mask = None
    if n < prompts.shape[1] and blocks[0].attn_mask is not None:
        mask = blocks[0].attn_mask[:n, :n].to(dtype=x.dtype, device=x.device)
    for i, block in enumerate(blocks):
        if 1 <= i <= len(deep):
            x = _replaced(x, deep[i - 1], start, start + deep[i - 1].shape[0])
        x = _block(block, x, mask)
    x = x.permute(1, 0, 2)  # LND -> NLD
    return encoder.project(x[torch.arange(x.shape[0]), eot])


def check_vit(clip_model, trainer: str) -> None:
    """Deep prompts run OpenAI's ``clip.model`` towers block by block: the image encoder must be its
    ``VisionTransformer`` (patch tokens to add prompts to), the text tower its own (no ``text_spec``
    of another tokenizer or layout, as open_clip backbones have)."""
    from clip.model import VisionTransformer
    visual = clip_model.visual
    if not isinstance(visual, VisionTransformer) or getattr(clip_model, "text_spec", None) is not None:
        raise ConfigError("{} prompts the blocks of OpenAI's CLIP ViT (clip.model), but MODEL.BACKBONE.NAME gives "
                          "a {} image encoder{}: use ViT-B/16 (the release's), ViT-B/32, ViT-L/14 or a weights "
                          "file of one".format(trainer, type(visual).__name__,
                                               " (an open_clip model)" if hasattr(clip_model, "text_spec") else ""))


def check_depth(tower, depth: int, key: str) -> None:
    """A prompt depth must not exceed the blocks of the tower it prompts (deeper prompts would never
    be used, yet trained and saved)."""
    blocks = len(tower.resblocks)
    if depth > blocks:
        raise ConfigError("{} is {}, but this CLIP's tower has {} blocks: choose at most {}".format(
            key, depth, blocks, blocks))


def deep_image_features(visual, images: torch.Tensor, shallow: Optional[torch.Tensor] = None,
                        deep: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """Image features [B, E] of ``clip.model.VisionTransformer`` ``visual`` with visual prompts:
    ``shallow`` [n, W] appended after the positional embedding (before ``ln_pre``; no position of
    their own), and before block ``i`` (1 <= i <= len(deep)) the last n tokens replaced by
    ``deep[i-1]`` [n, W]. Without prompts this is ``visual(images)`` exactly."""
    x = visual.conv1(images)  # [B, W, grid, grid]
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    if shallow is not None:
        x = torch.cat([x, shallow.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x).permute(1, 0, 2)  # NLD -> LND
    length = x.shape[0]
    for i, block in enumerate(visual.transformer.resblocks):
        if 1 <= i <= len(deep):
            x = _replaced(x, deep[i - 1], length - deep[i - 1].shape[0], length)
        x = block(x)
    x = visual.ln_post(x.permute(1, 0, 2)[:, 0, :])
    return x @ visual.proj if visual.proj is not None else x


# ----------------------------------------------------------------------------- prompt learners
def release_text_prompt(classnames, n_ctx: int, ctx_init: str):
    """MaPLe's and PromptSRC's rule for the first-layer text context, as ``PromptLearner`` arguments
    (classnames, keyword arguments): with ``ctx_init`` of at least ``n_ctx`` tokens, the first
    ``n_ctx`` tokens are learned from their embeddings and the rest of ``ctx_init`` stays in every
    prompt as fixed words before the class name ("a photo of a" with 2: "a photo" learned, "of a"
    fixed); otherwise ``n_ctx`` vectors from N(0, 0.02) and "X" placeholders."""
    ctx_init = ctx_init.replace("_", " ").strip()
    if not ctx_init or n_ctx > ctx_init_length(ctx_init, "tokens"):
        return list(classnames), {"n_ctx": n_ctx, "ctx_init": ""}
    words = ctx_init.split()
    cut = [k for k in range(1, len(words) + 1) if ctx_init_length(" ".join(words[:k]), "tokens") == n_ctx]
    if not cut:
        raise ConfigError("The first {} BPE tokens of CTX_INIT {!r} end inside a word: choose N_CTX at a word "
                          "boundary of it".format(n_ctx, ctx_init))
    learned, fixed = " ".join(words[:cut[0]]), " ".join(words[cut[0]:])
    names = [fixed + " " + class_text(c) if fixed else c for c in classnames]
    return names, {"n_ctx": n_ctx, "ctx_init": learned, "ctx_init_mode": "tokens"}


def _normal(shape, std=0.02):
    t = torch.empty(*shape)
    nn.init.normal_(t, std=std)
    return t


class DeepPrompts(NamedTuple):
    """What a deep prompt learner gives the encoders: the first-layer text prompts [C, L, D], the
    deeper text prompts (one [n_t, D] per block from block 1), the first-layer visual prompts
    [n_v, W] (or None) and the deeper visual prompts (one [n_v, W] per block from block 1)."""
    text: torch.Tensor
    deep_text: List[torch.Tensor]
    vision: Optional[torch.Tensor]
    deep_vision: List[torch.Tensor]


def _vision_width(clip_model):
    return clip_model.visual.class_embedding.shape[0]


class MaPLePromptLearner(PromptLearner):
    """MaPLe's coupled prompts: the text context ``ctx`` [n, D] (release rule, ``release_text_prompt``)
    and ``depth - 1`` deeper text prompts ``compound_prompts_text`` [n, D] from N(0, 0.02); the visual
    prompt of each depth is a linear map of the text prompt of that depth: ``proj(ctx)`` at the input,
    ``compound_prompt_projections[i](compound_prompts_text[i])`` deeper. The deeper projections start
    as copies of one initialised layer, as the release's. Parameter names are the release's."""

    def __init__(self, classnames, clip_model, n_ctx=2, ctx_init="a photo of a", depth=9):
        if depth < 1:
            raise ConfigError("TRAINER.MAPLE.PROMPT_DEPTH must be >= 1 (1: prompts at the input only), got {}"
                              .format(depth))
        check_vit(clip_model, "MaPLe")
        check_depth(clip_model.transformer, depth, "TRAINER.MAPLE.PROMPT_DEPTH")
        check_depth(clip_model.visual.transformer, depth, "TRAINER.MAPLE.PROMPT_DEPTH")
        names, kwargs = release_text_prompt(classnames, n_ctx, ctx_init)
        super().__init__(names, clip_model, **kwargs)
        dim, width = clip_model.ln_final.weight.shape[0], _vision_width(clip_model)
        self.proj = nn.Linear(dim, width).to(clip_model.dtype)
        self.compound_prompts_text = nn.ParameterList([nn.Parameter(torch.empty(self.n_ctx, dim))
                                                       for _ in range(depth - 1)])
        for p in self.compound_prompts_text:
            nn.init.normal_(p, std=0.02)
        single = nn.Linear(dim, width)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(single) for _ in range(depth - 1)])
        self.depth = depth

    def deep_prompts(self) -> DeepPrompts:
        deep_text = list(self.compound_prompts_text)
        deep_vision = [proj(t) for proj, t in zip(self.compound_prompt_projections, deep_text)]
        return DeepPrompts(self(), deep_text, self.proj(self.ctx), deep_vision)


class IVLPPromptLearner(PromptLearner):
    """PromptSRC's independent vision-language prompts: the text context ``ctx`` [n_t, D] (release
    rule) and ``depth_text - 1`` deeper text prompts; visual prompts ``vpt`` [n_v, W] at the input and
    ``depth_vision - 1`` deeper ones; every added prompt from N(0, 0.02). No coupling."""

    def __init__(self, classnames, clip_model, n_ctx_text=4, n_ctx_vision=4, ctx_init="a photo of a",
                 depth_text=9, depth_vision=9):
        if min(depth_text, depth_vision, n_ctx_vision) < 1:
            raise ConfigError("PromptSRC needs PROMPT_DEPTH_TEXT, PROMPT_DEPTH_VISION and N_CTX_VISION >= 1 "
                              "(TRAINER.PROMPTSRC), got {}, {} and {}".format(depth_text, depth_vision, n_ctx_vision))
        check_vit(clip_model, "PromptSRC")
        check_depth(clip_model.transformer, depth_text, "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT")
        check_depth(clip_model.visual.transformer, depth_vision, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION")
        names, kwargs = release_text_prompt(classnames, n_ctx_text, ctx_init)
        super().__init__(names, clip_model, **kwargs)
        dim, width = clip_model.ln_final.weight.shape[0], _vision_width(clip_model)
        self.deep_text = nn.ParameterList([nn.Parameter(_normal((self.n_ctx, dim))) for _ in range(depth_text - 1)])
        self.vpt = nn.Parameter(_normal((n_ctx_vision, width)))
        self.deep_vision = nn.ParameterList([nn.Parameter(_normal((n_ctx_vision, width)))
                                             for _ in range(depth_vision - 1)])
        self.n_ctx_vision, self.depth_text, self.depth_vision = n_ctx_vision, depth_text, depth_vision

    def deep_prompts(self) -> DeepPrompts:
        return DeepPrompts(self(), list(self.deep_text), self.vpt, list(self.deep_vision))


class DeepPromptCLIP(PromptedCLIP):
    """CLIP with a deep prompt learner on both encoders; logits are CLIP's scaled cosines. Without
    gradients the class text features are computed once and reused while the learner's parameters
    are unchanged (their version counters: an optimiser step or a checkpoint load bumps them), so a
    test pass costs one text-tower pass, not one per batch."""

    def __init__(self, prompt_learner, clip_model):
        super().__init__(prompt_learner, clip_model)
        self._text_cache = None  # (the learner's parameter versions, text features)

    def _learner_state(self):
        return tuple((id(t), t._version) for t in self.prompt_learner.parameters())

    def features(self, image, prompts: Optional[DeepPrompts] = None):
        """(normalised image features [B, E], normalised class text features [C, E]); ``prompts``
        given (PromptSRC's aggregated ones): never cached."""
        p = prompts if prompts is not None else self.prompt_learner.deep_prompts()
        learner = self.prompt_learner
        cacheable = prompts is None and not torch.is_grad_enabled()
        state = self._learner_state() if cacheable else None
        if cacheable and self._text_cache is not None and self._text_cache[0] == state:
            text = self._text_cache[1]
        else:
            text = normalize(deep_text_features(self.text_encoder, p.text, learner.tokenized_prompts, p.deep_text))
            self._text_cache = (state, text) if cacheable else None
        image = normalize(deep_image_features(self.image_encoder, image.type(self.dtype), p.vision, p.deep_vision))
        return image, text

    def forward(self, image):
        image, text = self.features(image)
        return self.logit_scale.exp() * image @ text.t()


@torch.no_grad()
def template_mean_text_features(clip_model, classnames, templates=PROMPTSRC_TEMPLATES) -> torch.Tensor:
    """[C, E] frozen-CLIP class text features as PromptSRC's teacher makes them: the mean over
    ``templates`` of the unnormalised text features, then L2-normalised (CLIP's own ensembling,
    ``ptnl.clip.features.text_classifier``, averages normalised features instead). The text tower
    runs up to each prompt's end-of-text token only (``TextEncoder``)."""
    device = clip_model.logit_scale.device
    encoder = TextEncoder(clip_model)
    total = None
    for template in templates:
        tokens = tokenize(class_prompts(template, classnames)).to(device)
        f = encoder(clip_model.token_embedding(tokens).type(clip_model.dtype), tokens).float()
        total = f if total is None else total + f
    return normalize(total / len(templates))
