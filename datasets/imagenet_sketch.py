from ptnl.compat import DATASET_REGISTRY

from .imagenet_variants import ImageNetTestSet


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetTestSet):
    """ImageNet-Sketch (test only): ``imagenet-sketch/images/<wnid>/`` (1000 folders) and
    ``classnames.txt``; labels index the sorted wnid folders, as ImageNet's."""

    dataset_dir = "imagenet-sketch"
    image_dir = "images"
