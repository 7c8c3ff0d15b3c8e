"""CoCoOp (Zhou et al., CVPR 2022): CoOp's shared context plus an image-conditioned shift, the
output of a small meta-net on the image feature added to every context token, so each image gets
its own C class prompts. Any batch size: a batch of B images is one text-encoder pass over B x C
prompts (truncated after the last end-of-text token); the image encoder stays frozen, so test
images are encoded once (the feature cache) and only the prompts are recomputed per image."""
from collections import OrderedDict

import torch
import torch.nn as nn

from ptnl.clip.heads import PromptedCLIP
from ptnl.clip.prompts import PromptLearner, assemble_prompts
from ptnl.clip.text import normalize
from ptnl.errors import ConfigError
from ptnl.io import get_logger
from ptnl.trainers.base import PTNLTrainerBase
from ptnl.trainers.registry import register_trainer

log = get_logger(__name__)

# At most this many prompts go through the text encoder at once when evaluating (a test batch of
# 100 images over 1000 ImageNet classes would be 100,000); training encodes the whole batch at once.
PROMPTS_PER_PASS = 4096


class MetaNet(nn.Sequential):
    """CoCoOp's meta-net: Linear(E -> E//16), ReLU, Linear(E//16 -> D), from a normalised image
    feature [B, E] to one context shift [B, D] (PyTorch's default initialisation, as the release)."""

    def __init__(self, vis_dim: int, ctx_dim: int):
        super().__init__(OrderedDict([("linear1", nn.Linear(vis_dim, vis_dim // 16)),
                                      ("relu", nn.ReLU(inplace=True)),
                                      ("linear2", nn.Linear(vis_dim // 16, ctx_dim))]))


class ConditionalPromptLearner(PromptLearner):
    """CoOp's shared context (``PromptLearner``, class token at the end) and a meta-net; the
    prompts of B images are [B x C, L, D], image b's context being ``ctx + meta_net(f_b)``."""

    def __init__(self, classnames, clip_model, n_ctx=16, ctx_init="", ctx_init_mode="coop"):
        super().__init__(classnames, clip_model, n_ctx=n_ctx, ctx_init=ctx_init, csc=False, position="end",
                         ctx_init_mode=ctx_init_mode)
        # built after the context, as the release, so the same seed gives the same initial weights
        self.meta_net = MetaNet(clip_model.visual.output_dim, self.ctx.shape[-1]).to(clip_model.dtype)

    def forward(self, image_features):
        """Prompts [B*C, L, D] for normalised image features [B, E] (image-major order)."""
        n_img, n_cls = image_features.shape[0], self.n_cls
        shift = self.meta_net(image_features)  # [B, D]
        ctx = self.ctx.unsqueeze(0) + shift.unsqueeze(1)  # [B, n, D]
        ctx = ctx.unsqueeze(1).expand(-1, n_cls, -1, -1).reshape(n_img * n_cls, self.n_ctx, -1)

        def tile(t):
            return t.unsqueeze(0).expand(n_img, *t.shape).reshape(n_img * n_cls, *t.shape[1:])
        return assemble_prompts(tile(self.token_prefix), ctx, tile(self.token_suffix), self.name_lens)


class ConditionalCLIP(PromptedCLIP):
    """Frozen CLIP encoders around a ``ConditionalPromptLearner``: logits [B, C] are the scaled
    cosines of each image's feature with the text features of its own C prompts."""

    def logits_from_features(self, features):
        """Logits from the image encoder's raw features [B, E] (e.g. cached ones)."""
        f = normalize(features.type(self.dtype))
        learner, n_cls = self.prompt_learner, self.prompt_learner.n_cls
        # training needs the whole batch's graph; an evaluation (no gradients: the trainers never put this
        # wrapper in eval mode, only its prompt learner) goes PROMPTS_PER_PASS prompts at a time
        step = len(f) if torch.is_grad_enabled() else max(1, PROMPTS_PER_PASS // n_cls)
        scale = self.logit_scale.exp()
        out = []
        for i in range(0, len(f), step):
            part = f[i:i + step]
            tokens = learner.tokenized_prompts.repeat(len(part), 1)
            text = normalize(self.text_encoder(learner(part), tokens)).view(len(part), n_cls, -1)
            out.append(scale * torch.einsum("be,bce->bc", part, text))
        return torch.cat(out)

    def classifier(self):
        """features [B, E] -> logits (each image has its own prompts: nothing to precompute)."""
        return self.logits_from_features

    def forward(self, image):
        with torch.no_grad():  # frozen: the meta-net's input needs no graph
            features = self.image_encoder(image.type(self.dtype))
        return self.logits_from_features(features)


@register_trainer
class CoCoOp(PTNLTrainerBase):
    """Trains CoCoOp's context and meta-net (``prompt_learner``); both CLIP encoders stay frozen.
    TRAINER.PTNL's N_CTX, CTX_INIT (word count sets n_ctx, as the release) and PREC apply; CSC and
    CLASS_TOKEN_POSITION are CoOp's only (CoCoOp's context is shared, the class token at the end).
    Not a ``PTNL`` subclass: its prompt depends on the image, so there is no fixed prompt to export."""

    COLOUR = "#332288"
    PROMPT_SETTINGS = True
    GROUPABLE = True  # trains its prompt learner through the base step; the image encoder runs once a batch
    raw_features = True  # the model normalises in its own dtype, as the release does

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        opts = cfg.TRAINER.PTNL
        if opts.CSC or opts.CLASS_TOKEN_POSITION != "end":
            raise ConfigError("CoCoOp has one shared context with the class token at the end: set TRAINER.PTNL.CSC "
                              "False and TRAINER.PTNL.CLASS_TOKEN_POSITION end (got {} and {!r})".format(
                                  opts.CSC, opts.CLASS_TOKEN_POSITION))

    def build_model(self):
        opts = self.cfg.TRAINER.PTNL
        clip_model = self.load_clip_model()
        log.info("Building custom CLIP (CoCoOp: context + meta-net)")
        learner = self.make_prompt_learner(opts, self.dm.dataset.classnames, clip_model)
        self.model = ConditionalCLIP(learner, clip_model)
        self.model.text_encoder.truncate = opts.TRUNCATE_TEXT
        log.info("Turning off gradients in both the image and the text encoder")
        self.freeze_all_but(self.model, ["prompt_learner.ctx", "prompt_learner.meta_net."])
        self.model.to(self.device)
        self.register_trainable("prompt_learner", self.model.prompt_learner)

    @classmethod
    def make_prompt_learner(cls, opts, classnames, clip_model) -> ConditionalPromptLearner:
        return ConditionalPromptLearner(classnames, clip_model, n_ctx=opts.N_CTX, ctx_init=opts.CTX_INIT,
                                        ctx_init_mode=opts.CTX_INIT_MODE)

    def frozen_state_keys(self, name):
        return ("token_prefix", "token_suffix")  # rebuilt from the current class names (base-to-new, transfer)

    def class_specific_state(self):
        return ""  # one shared context and the meta-net: any class names
