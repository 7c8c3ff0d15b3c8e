"""CLIP-based classifiers the trainers tune: a linear head on frozen image features, and CLIP
with a trainable text encoder on fixed class prompts. (Prompt learners are in ``ptnl.prompts``.)"""
import torch
import torch.nn as nn

from ptnl.clip_backbone import TextEncoder, normalize, tokenize
from ptnl.prompts import TextClassifier


class LinearHead(nn.Module):
    """logits = scale * normalize(f) @ W^T + b, W [C, D]. Initialised from text features it
    is zero-shot CLIP (Classifier-C); from random weights, Classifier-R."""

    def __init__(self, weight, scale):
        super().__init__()
        self.weight = nn.Parameter(weight.clone().float())
        self.bias = nn.Parameter(torch.zeros(weight.shape[0]))
        self.register_buffer("scale", torch.as_tensor(float(scale)))

    def forward(self, features):
        return self.scale * normalize(features.float()) @ self.weight.t() + self.bias


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
        self.dtype = clip_model.dtype
        self.register_buffer("tokenized_prompts", tokenize(prompts), persistent=False)

    def text_features(self):
        emb = self.token_embedding(self.tokenized_prompts).type(self.dtype)
        return normalize(self.text_encoder(emb, self.tokenized_prompts))
