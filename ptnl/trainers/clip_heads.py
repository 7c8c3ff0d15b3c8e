"""Linear classifiers on frozen CLIP image features (ClassifierR, ClassifierC), CLIP with a
fine-tuned text encoder (TEncFT) and zero-shot CLIP (ZeroshotCLIP)."""
import torch

from ptnl.models import ImageClassifier, LinearHead, TextTunedCLIP
from ptnl.trainer_base import PTNLTrainerBase
from ptnl.zeroshot import dataset_template, text_classifier


def class_prompts(cfg, classnames):
    template = dataset_template(cfg.DATASET.NAME)
    return template, [template.format(name.replace("_", " ")) for name in classnames]


class ClassifierC(PTNLTrainerBase):
    """A linear head initialised with the text features of the dataset's template prompts."""

    def initial_weight(self, clip_model, classnames):
        template, _ = class_prompts(self.cfg, classnames)
        print("Initialising the classifier from the text features of {!r}".format(template))
        return text_classifier(clip_model, classnames, [template])

    def build_model(self):
        clip_model = self.load_clip_model()
        weight = self.initial_weight(clip_model, self.dm.dataset.classnames)
        head = LinearHead(weight, clip_model.logit_scale.exp().item())
        self.model = ImageClassifier(clip_model, head)
        self.freeze_all_but(self.model, ["head."] if self.TRAINS else [])
        self.model.to(self.device)
        if self.TRAINS:
            self.register_trainable("head", self.model.head)


class ClassifierR(ClassifierC):
    """The same linear head, randomly initialised (N(0, 0.02))."""

    def initial_weight(self, clip_model, classnames):
        dim = clip_model.text_projection.shape[1]
        return torch.randn(len(classnames), dim) * 0.02


class ZeroshotCLIP(ClassifierC):
    """CLIP with the dataset's template prompts; nothing is trained."""

    TRAINS = False


class TEncFT(PTNLTrainerBase):
    """CLIP's text encoder fine-tuned on the dataset's template prompts."""

    def build_model(self):
        clip_model = self.load_clip_model()
        template, prompts = class_prompts(self.cfg, self.dm.dataset.classnames)
        print("Fine-tuning the text encoder on prompts {!r}".format(template))
        self.model = TextTunedCLIP(clip_model, prompts)
        self.model.text_encoder.truncate = self.cfg.TRAINER.PTNL.TRUNCATE_TEXT
        self.freeze_all_but(self.model, ["text_encoder."])
        self.model.to(self.device)
        self.register_trainable("text_encoder", self.model.text_encoder)
