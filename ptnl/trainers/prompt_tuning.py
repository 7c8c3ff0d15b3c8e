"""PTNL: CoOp prompt tuning (learnable context, fixed class-name tokens) with any loss."""
from ptnl import compat
from ptnl.clip_backbone import load_clip
from ptnl.prompts import PromptCLIP, PromptLearner
from ptnl.trainer_base import PTNLTrainerBase


class PTNL(PTNLTrainerBase):
    """Trains CoOp's context vectors; everything of CLIP stays frozen."""

    def build_model(self):
        cfg = self.cfg
        opts = cfg.TRAINER.PTNL
        classnames = self.dm.dataset.classnames
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        clip_model = load_clip(cfg.MODEL.BACKBONE.NAME, device="cpu", prec=self.precision)
        res = clip_model.visual.input_resolution
        if cfg.INPUT.SIZE[0] != res:
            raise ValueError("INPUT.SIZE {} does not match the CLIP input resolution {} of {}; set "
                             "INPUT.SIZE ({}, {})".format(tuple(cfg.INPUT.SIZE), res,
                                                          cfg.MODEL.BACKBONE.NAME, res, res))
        print("Building custom CLIP")
        print("Initializing {} context".format("class-specific" if opts.CSC else "a generic"))
        learner = PromptLearner(classnames, clip_model, n_ctx=opts.N_CTX, ctx_init=opts.CTX_INIT,
                                csc=opts.CSC, position=opts.CLASS_TOKEN_POSITION)
        self.model = PromptCLIP(learner, clip_model)
        print("Turning off gradients in both the image and the text encoder")
        self.freeze_all_but(self.model, ["prompt_learner"])
        self.model.to(self.device)
        self.optim = compat.build_optimizer(self.model.prompt_learner, cfg.OPTIM)
        self.sched = compat.build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("prompt_learner", self.model.prompt_learner, self.optim, self.sched)
        self.build_loss()

    def frozen_state_keys(self, name):
        return ("token_prefix", "token_suffix")
