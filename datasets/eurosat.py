from ptnl.compat import DATASET_REGISTRY
from ptnl.data.base import PTNLDatasetBase

NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(PTNLDatasetBase):
    """EuroSAT (RGB): 10 classes, ``eurosat/2750/<Folder>/``, CoOp's 50/20/30 folder split; the
    split keeps the folder names in the paths and stores the renamed class names."""

    dataset_dir = "eurosat"
    image_dir = "2750"
    split_file = "split_zhou_EuroSAT.json"

    def build_splits(self):
        return self.read_and_split_data(new_cnames=NEW_CNAMES)
