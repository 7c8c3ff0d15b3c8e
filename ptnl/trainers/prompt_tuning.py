"""Prompt trainers: PTNL (CoOp context), FullPromptTuning (context and class-name tokens),
CLSTuning (class-name tokens under a fixed "a photo of a" template)."""
from ptnl.clip.prompts import PromptCLIP, PromptLearner
from ptnl.io import get_logger
from ptnl.trainers.base import PTNLTrainerBase
from ptnl.trainers.registry import register_trainer

log = get_logger(__name__)


def n_ctx_0_warning(trainer: str) -> str:
    """N_CTX 0 is allowed, as in CoOp: it is the context-length ablation's zero point
    (``ctx_length.sh``). But it trains nothing, which a run must say loudly."""
    return ("WARNING: TRAINER.PTNL.N_CTX 0 leaves {} nothing to train (the context is its only trainable part): "
            "every epoch leaves the model as it is and the result is zero-shot CLIP with the prompt "
            "\"<class>.\" (the context-length ablation's baseline). Use N_CTX >= 1 (the paper: 16) to prompt-tune."
            .format(trainer))


@register_trainer
class PTNL(PTNLTrainerBase):
    """Trains CoOp's context vectors; everything of CLIP stays frozen."""

    COLOUR = "#0072B2"

    LEARN_CTX, LEARN_NAMES, FIXED_TEMPLATE = True, False, None
    PROMPT_SETTINGS = True
    GROUPABLE = True  # its subclasses here too; a subclass with its own epoch loop or stream says False

    def build_model(self):
        opts = self.cfg.TRAINER.PTNL
        clip_model = self.load_clip_model()
        log.info("Building custom CLIP")
        log.info("Initializing {} context".format("class-specific" if opts.CSC else "a generic"))
        learner = self.make_prompt_learner(opts, self.dm.dataset.classnames, clip_model)
        if self.LEARN_CTX and not self.LEARN_NAMES and learner.n_ctx == 0:
            log.warning(n_ctx_0_warning(type(self).__name__))
        self.model = PromptCLIP(learner, clip_model)
        self.model.text_encoder.truncate = self.cfg.TRAINER.PTNL.TRUNCATE_TEXT
        self.model.text_encoder.share_prefix = self.cfg.TRAINER.PTNL.SHARE_PREFIX
        log.info("Turning off gradients in both the image and the text encoder")
        self.freeze_all_but(self.model, ["prompt_learner.ctx"] * self.LEARN_CTX
                            + ["prompt_learner.name_emb"] * self.LEARN_NAMES)
        self.model.to(self.device)
        self.register_trainable("prompt_learner", self.model.prompt_learner)

    @classmethod
    def make_prompt_learner(cls, opts, classnames, clip_model) -> PromptLearner:
        """This trainer's prompt learner from the TRAINER.PTNL options ``opts`` (also how
        ``ptnl.export`` rebuilds a finished run's prompt)."""
        return PromptLearner(classnames, clip_model, n_ctx=opts.N_CTX, ctx_init=cls.FIXED_TEMPLATE or opts.CTX_INIT,
                             csc=opts.CSC, position=opts.CLASS_TOKEN_POSITION, learn_ctx=cls.LEARN_CTX,
                             learn_names=cls.LEARN_NAMES, ctx_init_mode=opts.CTX_INIT_MODE)

    def frozen_state_keys(self, name):
        return ("token_prefix", "token_suffix")

    def class_specific_state(self):
        learner = self.model.prompt_learner
        parts = ["class-specific context"] * (learner.ctx.dim() == 3) + ["class-name tokens"] * learner.learn_names
        return " and ".join(parts)  # "": one shared context, rebuilt around any class names


@register_trainer
class FullPromptTuning(PTNL):
    """Context vectors and the class-name token embeddings are both trained."""

    COLOUR = "#56B4E9"
    LEARN_NAMES = True


@register_trainer
class CLSTuning(PTNL):
    """Only the class-name token embeddings are trained, under the fixed template "a photo of a"."""

    COLOUR = "#009E73"

    LEARN_CTX, LEARN_NAMES, FIXED_TEMPLATE = False, True, "a photo of a"
