"""Linear classifiers on frozen CLIP image features (ClassifierR, ClassifierC), CLIP with a
fine-tuned text encoder (TEncFT) and zero-shot CLIP (ZeroshotCLIP)."""
import torch

from ptnl.clip.features import text_classifier
from ptnl.clip.heads import ImageClassifier, LinearHead, TextTunedCLIP
from ptnl.clip.templates import class_prompts, dataset_template
from ptnl.clip.text import embed_dim, logit_bias
from ptnl.io import get_logger
from ptnl.trainers.base import PTNLTrainerBase
from ptnl.trainers.registry import register_trainer

log = get_logger(__name__)


@register_trainer
class ClassifierC(PTNLTrainerBase):
    """A linear head initialised with the text features of the dataset's template prompts."""

    COLOUR = "#E69F00"
    GROUPABLE = True  # trains only its head through the base step: shares a stream's image-encoder pass

    def initial_weight(self, clip_model, classnames):
        template = dataset_template(self.cfg.DATASET.NAME)
        log.info("Initialising the classifier from the text features of {!r}".format(template))
        return text_classifier(clip_model, classnames, [template])

    def build_model(self):
        clip_model = self.load_clip_model()
        weight = self.initial_weight(clip_model, self.dm.dataset.classnames)
        head = LinearHead(weight, clip_model.logit_scale.exp().item(), bias=logit_bias(clip_model))
        self.model = ImageClassifier(clip_model, head)
        self.freeze_all_but(self.model, ["head."] if self.TRAINS else [])
        self.model.to(self.device)
        if self.TRAINS:
            self.register_trainable("head", self.model.head)


@register_trainer
class ClassifierR(ClassifierC):
    """The same linear head, randomly initialised (N(0, 0.02))."""

    COLOUR = "#D55E00"

    def initial_weight(self, clip_model, classnames):
        dim = embed_dim(clip_model)
        return torch.randn(len(classnames), dim) * 0.02


@register_trainer
class ZeroshotCLIP(ClassifierC):
    """CLIP with the dataset's template prompts; nothing is trained."""

    COLOUR = "#999999"
    USES_LOSS = False
    USES_SEED = False
    TRAINS = False
    GROUPABLE = False  # nothing to train


@register_trainer
class TEncFT(PTNLTrainerBase):
    """CLIP's text encoder fine-tuned on the dataset's template prompts."""

    COLOUR = "#CC79A7"

    @property
    def precision(self):
        """PREC fp16 trains with fp32 master weights under autocast (amp): SGD on a whole fp16
        transformer loses every update below fp16 resolution (lr 0.002 times a small gradient) and
        the weight decay."""
        prec = super().precision
        return "amp" if prec == "fp16" else prec

    def build_model(self):
        clip_model = self.load_clip_model()
        template = dataset_template(self.cfg.DATASET.NAME)
        prompts = class_prompts(template, self.dm.dataset.classnames)
        log.info("Fine-tuning the text encoder on prompts {!r}".format(template))
        self.model = TextTunedCLIP(clip_model, prompts)
        self.model.text_encoder.truncate = self.cfg.TRAINER.PTNL.TRUNCATE_TEXT
        self.freeze_all_but(self.model, ["text_encoder."])
        self.model.to(self.device)
        self.register_trainable("text_encoder", self.model.text_encoder)

    def class_specific_state(self):
        return ""  # the text encoder, run on the current classes' prompts
