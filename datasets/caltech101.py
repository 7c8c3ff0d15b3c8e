from ptnl.compat import DATASET_REGISTRY
from ptnl.data.base import PTNLDatasetBase

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(PTNLDatasetBase):
    """Caltech101: 100 classes, ``caltech-101/101_ObjectCategories/<category>/``, CoOp's 50/20/30
    folder split without the background and easy-faces folders. Labels follow the code-point sort
    of the folder names, so face, leopard, motorbike come first."""

    dataset_dir = "caltech-101"
    image_dir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"

    def build_splits(self):
        return self.read_and_split_data(ignored=IGNORED, new_cnames=NEW_CNAMES)
