"""PromptSRC (Khattak et al., ICCV 2023): independent deep vision and language prompts trained with
self-regularisation against frozen CLIP (L1 feature consistency of image and text features, KL
consistency of the logits) and Gaussian-weighted aggregation of the prompts over epochs (GPA).
The label term is TRAINER.PTNL.LOSS (the release's: cross-entropy); the regularisers need no label."""
import numpy as np
import torch
import torch.nn.functional as F

from ptnl.clip.deep_prompts import PROMPTSRC_TEMPLATES, IVLPPromptLearner, template_mean_text_features
from ptnl.clip.features import encoded_as
from ptnl.clip.text import normalize
from ptnl.clip.weights import weights_digest
from ptnl.io import cache, get_logger
from ptnl.trainers.maple import DeepPromptTrainer
from ptnl.trainers.registry import register_trainer

log = get_logger(__name__)


def gpa_weights(num_epochs: int, mean: float, std: float) -> np.ndarray:
    """PromptSRC's Gaussian prompt aggregation weights: the N(mean, std) density at epochs
    1..num_epochs, normalised to sum to 1 (epoch e's prompts count with weight w[e-1])."""
    epochs = np.arange(1, num_epochs + 1, dtype=np.float64)
    density = np.exp(-0.5 * ((epochs - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))
    return density / density.sum()


def self_consistency_loss(text, text_zs, image, image_zs, logits, logits_zs, text_weight=25.0, image_weight=10.0,
                          logit_weight=1.0):
    """PromptSRC's L_SCL: ``text_weight`` x mean |t - t_zs| over classes and dimensions, plus
    ``image_weight`` x mean |f - f_zs| over the batch, plus ``logit_weight`` x KL(p_zs || p) summed
    and divided by B x C (the release's normalisation, not a per-sample mean); features are the
    normalised prompted and frozen-CLIP ones, p and p_zs the softmaxes of the scaled logits."""
    loss_text = F.l1_loss(text.float(), text_zs.float()) * text_weight
    loss_image = F.l1_loss(image.float(), image_zs.float()) * image_weight
    kl = F.kl_div(F.log_softmax(logits.float(), dim=1), F.log_softmax(logits_zs.float(), dim=1), reduction="sum",
                  log_target=True) / logits.numel()
    return loss_text + loss_image + logit_weight * kl


@register_trainer
class PromptSRC(DeepPromptTrainer):
    """Independent vision-language prompts with PromptSRC's self-regularisation and GPA."""

    COLOUR = "#AA4499"
    OPTIONS = "PROMPTSRC"
    # the keys that shape the prompts: --eval-only takes them from the trained run
    MODEL_KEYS = tuple("TRAINER.PROMPTSRC." + k for k in ("N_CTX_TEXT", "N_CTX_VISION", "CTX_INIT", "PROMPT_DEPTH_TEXT",
                                                         "PROMPT_DEPTH_VISION"))

    def make_prompt_learner(self, classnames, clip_model):
        o = self.cfg.TRAINER.PROMPTSRC
        log.info("PromptSRC: text {} tokens to depth {}, vision {} tokens to depth {}, CTX_INIT {!r}".format(
            o.N_CTX_TEXT, o.PROMPT_DEPTH_TEXT, o.N_CTX_VISION, o.PROMPT_DEPTH_VISION, o.CTX_INIT))
        return IVLPPromptLearner(classnames, clip_model, n_ctx_text=o.N_CTX_TEXT, n_ctx_vision=o.N_CTX_VISION,
                                 ctx_init=o.CTX_INIT, depth_text=o.PROMPT_DEPTH_TEXT,
                                 depth_vision=o.PROMPT_DEPTH_VISION)

    def prompt_settings(self):
        o = self.cfg.TRAINER.PROMPTSRC
        return dict(super().prompt_settings(), n_ctx_vision=o.N_CTX_VISION, depth_text=o.PROMPT_DEPTH_TEXT,
                    depth_vision=o.PROMPT_DEPTH_VISION)

    def build_frozen_targets(self, clip_model):
        """The frozen text targets: the 60-template mean of CLIP's class text features, computed
        once and cached per (weights, class names, device type and dtype). The frozen image
        targets are the unprompted image encoder's features of each training batch."""
        o = self.cfg.TRAINER.PROMPTSRC
        names = list(self.dm.dataset.classnames)
        key = cache.cache_key(kind="promptsrc_text_targets", weights=weights_digest(self.clip_weights_path),
                              classnames=names, templates=PROMPTSRC_TEMPLATES,
                              encoded=encoded_as(self.device, clip_model.dtype))
        stored = cache.load(key) if self.cfg.TRAINER.PTNL.CACHE_FEATURES else None
        if stored is None:
            log.info("Frozen CLIP text targets: {} classes x {} templates".format(len(names), len(PROMPTSRC_TEMPLATES)))
            clip_model.to(self.device)
            stored = template_mean_text_features(clip_model, names).cpu()
            if self.cfg.TRAINER.PTNL.CACHE_FEATURES:
                cache.save(key, stored)
        self.text_targets = stored.to(self.device)
        self.gpa = gpa_weights(self.cfg.OPTIM.MAX_EPOCH, o.GPA_MEAN, o.GPA_STD)
        self.gpa_sum = None
        log.info("GPA weights by epoch (N({}, {}) over {} epochs): {}".format(
            o.GPA_MEAN, o.GPA_STD, len(self.gpa), " ".join("{:.3f}".format(w) for w in self.gpa)))

    def compute_loss(self, batch):
        o = self.cfg.TRAINER.PROMPTSRC
        model = self.model
        image, text = model.features(batch["img"])
        scale = model.logit_scale.exp()
        logits = scale * image @ text.t()
        with torch.no_grad():
            image_zs = normalize(model.image_encoder(batch["img"].type(model.dtype)))
            logits_zs = scale * image_zs @ self.text_targets.type(image_zs.dtype).t()
        regulariser = self_consistency_loss(text, self.text_targets, image, image_zs, logits, logits_zs,
                                            o.TEXT_LOSS_WEIGHT, o.IMAGE_LOSS_WEIGHT, o.LOGIT_LOSS_WEIGHT)
        return self.loss_fn(logits, batch["label"]) + regulariser, logits

    # ------------------------------------------------------------------ Gaussian prompt aggregation
    def learned_state(self):
        learner = self.model.prompt_learner
        return {n: p for n, p in learner.named_parameters() if p.requires_grad}

    def after_epoch(self):
        """Adds this epoch's prompts, weighted, to the running GPA sum; after the last epoch the
        prompts become that sum, before the checkpoint is written and the model tested."""
        weight = float(self.gpa[self.epoch])
        with torch.no_grad():
            current = {n: p.detach().float() * weight for n, p in self.learned_state().items()}
            if self.gpa_sum is None:
                self.gpa_sum = current
            else:
                self.gpa_sum = {n: self.gpa_sum[n] + current[n] for n in current}
            if self.epoch + 1 == self.max_epoch:
                log.info("Using the GPA prompts (Gaussian-weighted over epochs) for the final model")
                for n, p in self.learned_state().items():
                    p.copy_(self.gpa_sum[n].to(p.dtype))
        super().after_epoch()

    def checkpoint_extra(self):
        extra = super().checkpoint_extra()
        if getattr(self, "gpa_sum", None) is not None:
            extra["gpa_sum"] = {n: t.cpu() for n, t in self.gpa_sum.items()}
        return extra

    def before_train(self):
        super().before_train()
        resumed = (getattr(self, "resumed_checkpoint", None) or {}).get("gpa_sum")
        if resumed is not None:
            self.gpa_sum = {n: t.to(self.device) for n, t in resumed.items()}
        elif self.start_epoch > 0:
            log.warning("Warning: the checkpoint resumed from holds no GPA sum: the final prompts aggregate only "
                        "epochs {}..{}".format(self.start_epoch + 1, self.max_epoch))
