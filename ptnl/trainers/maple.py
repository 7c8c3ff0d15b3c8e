"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompt learning with deep language prompts whose
visual prompts are linear maps of them, on the real CLIP run block by block
(``ptnl.clip.deep_prompts``). The loss is TRAINER.PTNL.LOSS (the release's: cross-entropy)."""
from ptnl.clip.deep_prompts import DeepPromptCLIP, MaPLePromptLearner
from ptnl.io import get_logger
from ptnl.trainers.base import PTNLTrainerBase
from ptnl.trainers.registry import register_trainer

log = get_logger(__name__)


class DeepPromptTrainer(PTNLTrainerBase):
    """A trainer of a deep prompt learner (``self.model.prompt_learner``, everything else of CLIP
    frozen): the image encoder runs on every batch (its prompts change), the class text features
    once per evaluation pass."""

    PROMPT_SETTINGS = True
    OPTIONS = ""  # the config node of the learner's options under TRAINER (CTX_INIT among them)

    def build_model(self):
        clip_model = self.load_clip_model()
        log.info("Building custom CLIP")
        learner = self.make_prompt_learner(self.dm.dataset.classnames, clip_model)  # the subclass's learner
        self.model = DeepPromptCLIP(learner, clip_model)
        self.model.text_encoder.truncate = self.cfg.TRAINER.PTNL.TRUNCATE_TEXT
        log.info("Turning off gradients in both the image and the text encoder")
        self.freeze_all_but(self.model, ["prompt_learner."])
        self.model.to(self.device)
        self.build_frozen_targets(clip_model)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log.info("Trainable parameters: {:,}".format(trainable))
        self.register_trainable("prompt_learner", self.model.prompt_learner)

    def build_frozen_targets(self, clip_model):
        """What a trainer needs of frozen CLIP besides the model (PromptSRC's teacher); none here."""

    def frozen_state_keys(self, name):
        return ("token_prefix", "token_suffix")  # rebuilt from the current class names (base-to-new, cross-dataset)

    def class_specific_state(self):
        return ""  # shared text and vision prompts: any class names

    def prompt_settings(self):
        learner = self.model.prompt_learner
        return {"n_ctx": learner.n_ctx, "csc": False, "class_token_position": "end",
                "ctx_init": self.cfg.TRAINER[self.OPTIONS].CTX_INIT}


@register_trainer
class MaPLe(DeepPromptTrainer):
    """MaPLe's coupled vision-language prompts to depth TRAINER.MAPLE.PROMPT_DEPTH."""

    COLOUR = "#882255"
    OPTIONS = "MAPLE"
    MODEL_KEYS = ("TRAINER.MAPLE.",)  # every key shapes the prompts: --eval-only takes them from the trained run

    def make_prompt_learner(self, classnames, clip_model):
        o = self.cfg.TRAINER.MAPLE
        log.info("MaPLe: N_CTX {}, CTX_INIT {!r}, PROMPT_DEPTH {}".format(o.N_CTX, o.CTX_INIT, o.PROMPT_DEPTH))
        return MaPLePromptLearner(classnames, clip_model, n_ctx=o.N_CTX, ctx_init=o.CTX_INIT, depth=o.PROMPT_DEPTH)

    def prompt_settings(self):
        return dict(super().prompt_settings(), depth=self.cfg.TRAINER.MAPLE.PROMPT_DEPTH)
