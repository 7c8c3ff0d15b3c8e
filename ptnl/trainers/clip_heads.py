"""Deprecated: moved to ``ptnl.trainers.classifiers``."""
from ptnl._deprecated import moved

moved(__name__, "ptnl.trainers.classifiers")
from ptnl.clip.templates import class_prompts as _class_prompts, dataset_template  # noqa: E402
from ptnl.trainers.classifiers import *  # noqa: E402,F401,F403


def class_prompts(cfg, classnames):
    """Deprecated: ``ptnl.clip.templates.class_prompts(template, classnames)``."""
    template = dataset_template(cfg.DATASET.NAME)
    return template, _class_prompts(template, classnames)
