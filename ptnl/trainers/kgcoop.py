"""KgCoOp (Yao et al., CVPR 2023): CoOp whose loss adds W times the distance between each class's
learned text feature and its hand-crafted one (frozen CLIP on the dataset's zero-shot template):
W * (1 - mean over classes of their cosine), which is half their mean squared distance."""
import torch

from ptnl.clip.features import text_classifier
from ptnl.clip.prompts import PromptCLIP
from ptnl.clip.templates import dataset_template
from ptnl.io import get_logger
from ptnl.trainers.prompt_tuning import PTNL
from ptnl.trainers.registry import register_trainer

log = get_logger(__name__)


def knowledge_distance(text, anchor):
    """1 - mean_c cos(text_c, anchor_c) of text features [C, D] and hand-crafted ones [C, D] (fp32)."""
    return 1.0 - torch.nn.functional.cosine_similarity(text.float(), anchor.float(), dim=1, eps=1e-7).mean()


class AnchoredPromptCLIP(PromptCLIP):
    """``PromptCLIP`` holding the hand-crafted class text features (rebuilt for the current class
    names, never saved) and the text features of its last forward pass (the loss needs both)."""

    def __init__(self, prompt_learner, clip_model, anchor):
        super().__init__(prompt_learner, clip_model)
        self.register_buffer("anchor", anchor, persistent=False)
        self.last_text = None

    def text_features(self):
        self.last_text = super().text_features()
        return self.last_text


@register_trainer
class KgCoOp(PTNL):
    """CoOp's context (every TRAINER.PTNL prompt option) trained with the run's loss plus
    TRAINER.KGCOOP.W times the distance to the hand-crafted class text features."""

    COLOUR = "#117733"

    def build_model(self):
        super().build_model()  # CoOp's prompt learner, registered and on the device
        learner, text_encoder = self.model.prompt_learner, self.model.text_encoder
        self.model = AnchoredPromptCLIP(learner, self._clip_model, self._anchor).to(self.device)
        self.model.text_encoder.truncate = text_encoder.truncate
        self.model.text_encoder.share_prefix = text_encoder.share_prefix
        del self._clip_model, self._anchor

    def load_clip_model(self):
        clip_model = super().load_clip_model()
        template = dataset_template(self.cfg.DATASET.NAME)
        log.info('Hand-crafted prompts (KgCoOp): "{}", weight W = {}'.format(template, self.cfg.TRAINER.KGCOOP.W))
        self._anchor = text_classifier(clip_model, self.dm.dataset.classnames, template).to(clip_model.dtype)
        self._clip_model = clip_model  # the model is wrapped again, around the same modules, once built
        return clip_model

    def compute_loss(self, batch):
        logits = self.model(batch["img"])
        distance = knowledge_distance(self.model.last_text, self.model.anchor)
        return self.loss_fn(logits, batch["label"]) + self.cfg.TRAINER.KGCOOP.W * distance, logits
