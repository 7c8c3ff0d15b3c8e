"""Zero-shot prompt templates per dataset (CoOp's ``CUSTOM_TEMPLATES`` in trainers/zsclip.py)."""
from ptnl.errors import ConfigError

# Keyed by DATASET.NAME; ``{}`` takes the class name with underscores turned into spaces.
CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "Food101N": "a photo of {}, a type of food.",  # Food-101's classes and template
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}
DEFAULT_TEMPLATE = "a photo of a {}."  # CLIP's generic template (CoOp's, for datasets without their own)


def register_template(dataset_name: str, template: str) -> None:
    """Make ``template`` (with one ``{}`` for the class name) the zero-shot template of the dataset
    registered as ``dataset_name``. A PTNL dataset class does it by setting ``template`` next to its
    other attributes; a CoOp fork's own dataset calls this once."""
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ConfigError("The template of dataset {!r} must be a string with one '{{}}' for the class name, "
                          "got {!r}".format(dataset_name, template))
    CUSTOM_TEMPLATES[dataset_name] = template


def dataset_template(dataset_name: str) -> str:
    """The zero-shot template of a dataset (CoOp's table, or the one its class registered). An
    unknown name is an error, not "a photo of a {}.": a forgotten template would silently change
    every prompt-initialised result."""
    if dataset_name not in CUSTOM_TEMPLATES:
        raise ConfigError(
            "No zero-shot template for dataset {!r} (DATASET.NAME): set template = \"a photo of a {{}}.\" (one "
            "'{{}}' for the class name) on its class, or call ptnl.clip.templates.register_template({!r}, ...); "
            "known: {}".format(dataset_name, dataset_name, ", ".join(sorted(CUSTOM_TEMPLATES))))
    return CUSTOM_TEMPLATES[dataset_name]


def class_text(classname):
    """A class name as prompts say it: underscores become spaces."""
    return classname.replace("_", " ")


def class_prompts(template, classnames):
    """The prompt of each class: ``template`` filled with the class name as text."""
    return [template.format(class_text(name)) for name in classnames]

# The 7 ImageNet templates CLIP's prompt-engineering notebook recommends (CoOp's
# IMAGENET_TEMPLATES_SELECT); CoOp's ZeroshotCLIP2 adds the dataset's own template.
IMAGENET_TEMPLATES_SELECT = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def template_set(dataset_name, which="dataset"):
    """``dataset``: the dataset's template; ``ensemble``: the 7 selected ImageNet templates plus
    the dataset's own (except for ImageNet, as CoOp's ZeroshotCLIP2)."""
    if which == "dataset":
        return [dataset_template(dataset_name)]
    if which == "ensemble":
        extra = [] if dataset_name == "ImageNet" else [dataset_template(dataset_name)]
        return IMAGENET_TEMPLATES_SELECT + extra
    raise ConfigError("Template set must be 'dataset' or 'ensemble' (TRAINER.UPL.TEMPLATES), got {!r}".format(which))
