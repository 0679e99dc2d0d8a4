"""
Point-cloud classification datasets as `datasets.Dataset` objects.

Every loader returns the same schema (see `point_features`):

    {"points": Array2D(shape=(None, 3), dtype="float32"),   # one [N, 3] cloud per row, x y z only
     "label":  ClassLabel(names=[...])}                      # class names in label-id order

`Array2D((None, 3))` allows clouds of different sizes; `dataset.with_format("torch")` gives an `[N, 3]` float32
tensor per row and `[B, N, 3]` per batch when the sizes match (a list of tensors otherwise). Extra channels (normals,
colours) are dropped and so are all other columns, except the `path` of each file in a class-folder tree.

Modules
-------
- `loading.py`: `load_point_cloud_dataset(source, split)`, which tells the kind of source and hands it to one of:
- `hub.py`: Hub datasets (a short name from `HUB_DATASETS` or a repo id), local folders that `datasets.load_dataset`
  reads, and `save_to_disk` folders; their points and label columns are found and mapped to the schema.
- `h5_folder.py`: h5 folders in the `modelnet40_ply_hdf5_2048` layout (also used for ScanObjectNN).
- `folder_tree.py`: class-folder trees of point-cloud or mesh files, with or without split folders.
- `schema.py`: the schema, the ModelNet40 / ScanObjectNN class lists, the dataset check and the class-name rules.
- `splits.py`: `few_shot_subset` and `train_validation_split`.
"""

from .hub import HUB_DATASETS, LABEL_COLUMN_CANDIDATES, POINTS_COLUMN_CANDIDATES
from .loading import load_point_cloud_dataset
from .schema import (
    MODELNET40_CLASSES,
    POINT_FEATURES,
    SCANOBJECTNN_CLASSES,
    check_point_cloud_dataset,
    class_names_of,
    point_features,
)
from .splits import few_shot_subset, train_validation_split

__all__ = [
    "HUB_DATASETS",
    "LABEL_COLUMN_CANDIDATES",
    "MODELNET40_CLASSES",
    "POINTS_COLUMN_CANDIDATES",
    "POINT_FEATURES",
    "SCANOBJECTNN_CLASSES",
    "check_point_cloud_dataset",
    "class_names_of",
    "few_shot_subset",
    "load_point_cloud_dataset",
    "point_features",
    "train_validation_split",
]
