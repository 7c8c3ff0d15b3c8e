from ptnl.compat import DATASET_REGISTRY

from .imagenet_variants import ImageNetTestSet


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetTestSet):
    """ImageNet-A (test only): ``imagenet-adversarial/imagenet-a/<wnid>/``, the 200 wnid folders of ImageNet-A's
    classes (its README.txt is skipped), and ImageNet's ``classnames.txt``. The classes are the folders
    present, labelled 0..199 in sorted wnid order, so the model is built on those 200 names only
    (CoOp's protocol; the same predictions as 1000-way logits masked to the official subset)."""

    dataset_dir = "imagenet-adversarial"
    image_dir = "imagenet-a"
