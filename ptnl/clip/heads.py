"""CLIP-based classifier heads the trainers tune: CLIP's text classifier (scaled cosines), a
linear head on frozen image features, and CLIP with a trainable text encoder on fixed class
prompts. (Prompt learners are in ``ptnl.clip.prompts``.)"""
import torch
import torch.nn as nn

from ptnl.clip.text import TextEncoder, logit_bias, normalize, tokenize


class TextClassifier:
    """CLIP's classification head for models that define ``text_features()`` (normalised [C, D]):
    logits are ``logit_scale`` times the cosine of image and text features, plus the model's
    ``logit_bias`` where it has one (SigLIP: the logits of its per-class sigmoid scores; a softmax over
    classes, as in CE and GCE, is unchanged by it)."""

    def classifier(self):
        """features [B, D] -> logits, with the text features computed once: evaluating many
        batches of cached features costs one text-encoder pass, not one per batch."""
        text = self.text_features().t()
        scale = self.logit_scale.exp()
        bias = getattr(self, "logit_bias", None)
        if bias is not None:
            return lambda features: scale * normalize(features).type(self.dtype) @ text + bias
        return lambda features: scale * normalize(features).type(self.dtype) @ text

    def logits_from_features(self, features):
        """Logits from image-encoder features [B, D] (e.g. cached ones)."""
        return self.classifier()(features)

    def forward(self, image):
        return self.logits_from_features(self.image_encoder(image.type(self.dtype)))


class PromptedCLIP(nn.Module):
    """CLIP's frozen image and text encoders (``TextEncoder``), logit scale and dtype around a trainable
    ``prompt_learner``: the parts every prompt-tuned model holds (CoOp's, CoCoOp's, MaPLe's)."""

    def __init__(self, prompt_learner, clip_model):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype


class LinearHead(nn.Module):
    """logits = scale * normalize(f) @ W^T + b, W [C, D]. Initialised from text features it
    is zero-shot CLIP (Classifier-C); from random weights, Classifier-R. ``bias`` initialises b (the
    model's logit bias, SigLIP's, so that Classifier-C starts as its zero-shot logits)."""

    def __init__(self, weight, scale, normalize=True, bias=None):
        super().__init__()
        self.weight = nn.Parameter(weight.clone().float())
        self.bias = nn.Parameter(torch.zeros(weight.shape[0]) + (0.0 if bias is None else float(torch.as_tensor(bias).detach())))
        self.register_buffer("scale", torch.as_tensor(float(scale)))
        self.normalize = normalize  # False: the raw features, as CoOp's linear probe

    def forward(self, features):
        f = features.float()
        return self.scale * (normalize(f) if self.normalize else f) @ self.weight.t() + self.bias


class ImageClassifier(nn.Module):
    """Frozen CLIP image encoder followed by a head."""

    def __init__(self, clip_model, head):
        super().__init__()
        self.image_encoder = clip_model.visual
        self.head = head
        self.dtype = clip_model.dtype

    def classifier(self):
        return self.head

    def logits_from_features(self, features):
        return self.head(features)

    def forward(self, image):
        with torch.no_grad():
            feats = self.image_encoder(image.type(self.dtype))
        return self.head(feats)


class TextTunedCLIP(TextClassifier, nn.Module):
    """CLIP whose text encoder (transformer, positional embedding, final norm, projection) is
    trained on fixed class prompts; token embeddings and image encoder stay frozen."""

    def __init__(self, clip_model, prompts):
        super().__init__()
        self.image_encoder = clip_model.visual
        self.token_embedding = clip_model.token_embedding
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.logit_bias = logit_bias(clip_model)
        self.dtype = clip_model.dtype
        self.register_buffer("tokenized_prompts", tokenize(prompts, clip_model), persistent=False)

    def text_features(self):
        emb = self.token_embedding(self.tokenized_prompts).type(self.dtype)
        return normalize(self.text_encoder(emb, self.tokenized_prompts))
