"""
h5 folders in the `modelnet40_ply_hdf5_2048` layout (also used for ScanObjectNN).

`{split}_files.txt` lists the h5 files of a split (paths such as `data/modelnet40_ply_hdf5_2048/ply_data_train0.h5`
are resolved by basename inside the folder); without it, `*{split}*.h5` files are globbed. Each file holds `data`
`[N, P, C>=3]` and `label` `[N]` or `[N, 1]`. Class names come from the given `class_names`, else
`shape_names.txt`, else `MODELNET40_CLASSES` / `SCANOBJECTNN_CLASSES` when the folder or file names say which
(`modelnet40` / `ply_data_` versus `scanobject` / `objectdataset`). Needs `h5py` (`pip install pointclip_hf[h5]`).
"""

import re
import warnings
from pathlib import Path

import datasets
import numpy as np
from datasets import Dataset

from ..io.errors import FormatError, check_declared_size, check_rules
from .folder_tree import natural_key
from .schema import MODELNET40_CLASSES, SCANOBJECTNN_CLASSES, point_features, resolve_class_names

H5_EXTENSIONS = (".h5", ".hdf5")


def load_h5_folder(root: Path, split: str, class_names: list[str] | None, num_points: int | None) -> Dataset:
    """
    Read one split of an h5 folder.

    Args:
        root (`Path`):
            The folder.
        split (`str`):
            The split to read.
        class_names (`list[str]`, *optional*):
            The class names in label-id order, overriding what the folder says.
        num_points (`int`, *optional*):
            Keep only the first `num_points` points of each cloud.

    Returns:
        `datasets.Dataset`: with the schema of `pointclip_hf.data.point_features`.
    """
    h5py = _import_h5py()
    files = _h5_files(root, split)
    blocks, labels, offset = [], [], 0
    for file in files:
        points, label = _read_h5_file(h5py, file, num_points)
        _finite_check(points, offset, f"the {split!r} split (file {file.name!r})")
        blocks.append(points)
        labels.append(label.astype(np.int64))
        offset += len(points)
    if offset == 0:
        raise ValueError(f"the {split!r} split of the h5 folder {str(root)!r} is empty (0 clouds)")
    defaults = _h5_default_names(root, files) if class_names is None else None
    if class_names is None and defaults is None:
        raise ValueError(
            f"cannot tell the class names of the h5 folder {str(root)!r}: add a shape_names.txt (one name per "
            "line, in label order) or pass class_names="
        )
    names = resolve_class_names(np.concatenate(labels), class_names, defaults, f"the h5 folder {str(root)!r}")
    features = point_features(names)
    parts = [
        Dataset.from_dict({"points": block, "label": label}, features=features, split=split)
        for block, label in zip(blocks, labels)
        if len(block)
    ]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts, split=split)


def _import_h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(
            "Reading h5 point-cloud folders needs h5py, which is not installed: "
            "pip install 'pointclip_hf[h5]' (or pip install h5py)"
        ) from exc
    return h5py


def _read_h5_file(h5py, file: Path, num_points: int | None) -> tuple[np.ndarray, np.ndarray]:
    """`(points of shape (clouds, points, 3) as float32, labels of shape (clouds,))` of one h5 file, checked; any
    failure is one `ValueError` naming the file."""
    try:
        with h5py.File(file, "r") as handle:
            points, label = _h5_arrays(h5py, handle, file.stat().st_size, num_points)
    except Exception as error:  # h5py raises OSError, KeyError, RuntimeError, ValueError... for damaged files
        reason = (
            f": {error}" if isinstance(error, FormatError) else f" cannot be read ({type(error).__name__}: {error})"
        )
        raise ValueError(f"h5 file {str(file)!r}{reason}") from None
    if not np.issubdtype(label.dtype, np.integer):
        if not np.all(np.isfinite(label)) or not np.all(label == np.round(label)):
            raise ValueError(f"h5 file {str(file)!r}: 'label' holds non-integer values")
    return points, label


def _h5_arrays(h5py, handle, stored_bytes: int, num_points: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Check the shapes, types and declared sizes of `data` and `label` before reading either."""
    data, label = (_h5_dataset(h5py, handle, name) for name in ("data", "label"))
    clouds = data.shape[0] if data.ndim else 0
    check_rules([
        (data.ndim == 3 and data.shape[2] >= 3, f"'data' has shape {data.shape}, expected [N, P, C>=3] points"),
        (label.shape in ((clouds,), (clouds, 1)),
         f"'label' has shape {label.shape} for {clouds} clouds; expected [N] or [N, 1]"),
        (data.ndim != 3 or data.shape[1] > 0 or clouds == 0, "clouds have no points"),
    ])  # fmt: skip
    kept = min(data.shape[1], num_points) if num_points else data.shape[1]
    check_declared_size(data.shape[0] * kept * 3 * 4, f"'data' of shape {data.shape}", stored_bytes=stored_bytes)
    check_declared_size(label.size * 8, f"'label' of shape {label.shape}", stored_bytes=stored_bytes)
    points = np.ascontiguousarray(data[:, :kept, :3], dtype=np.float32)
    return points, np.asarray(label[()]).reshape(-1)


def _h5_dataset(h5py, handle, name: str):
    """The array `name` of an h5 file: present, a plain numeric dataset, with its values in this file (an external
    link is never followed)."""
    link = handle.get(name, getlink=True)
    linked = isinstance(link, h5py.ExternalLink)
    dataset = handle[name] if link is not None and not linked else None
    array = isinstance(dataset, h5py.Dataset)
    check_rules([
        (link is not None, f"needs 'data' and 'label' datasets, found {list(handle.keys())}"),
        (not linked, f"{name!r} links to another file"),
        (dataset is None or array, f"{name!r} is a {type(dataset).__name__}, expected an array"),
        (not array or dataset.dtype.kind in "iuf", f"{name!r} has dtype {getattr(dataset, 'dtype', None)}, "
                                                   "expected numbers"),
        (not array or not (dataset.external or dataset.is_virtual),
         f"{name!r} keeps its values outside this file (external or virtual storage)"),
    ])  # fmt: skip
    return dataset


def _finite_check(points: np.ndarray, first_row: int, where: str) -> None:
    """Raise naming the first row (global index) of a `(clouds, points, 3)` block with NaN or infinite coordinates."""
    bad = ~np.isfinite(points).all(axis=(1, 2))
    if bad.any():
        row = first_row + int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"row {row} of {where} has NaN or infinite coordinates ({int(bad.sum())} such rows in this block)"
        )


def _h5_splits(root: Path) -> list[str]:
    found = {p.name[: -len("_files.txt")] for p in root.glob("*_files.txt")}
    for p in root.iterdir():
        if p.suffix.lower() in H5_EXTENSIONS:
            name = p.name.lower()
            found.update(s for s in ("train", "test", "val") if s in name)
    return sorted(found)


def _h5_files(root: Path, split: str) -> list[Path]:
    listing = root / f"{split}_files.txt"
    if listing.is_file():
        return _listed_h5_files(root, listing, split)
    files = sorted(
        (p for p in root.iterdir() if p.suffix.lower() in H5_EXTENSIONS and split.lower() in p.name.lower()),
        key=natural_key,
    )
    if not files:
        raise ValueError(
            f"unknown split {split!r} for the h5 folder {str(root)!r}: no {split}_files.txt and no "
            f"*{split}*.h5 file; available splits: {_h5_splits(root)}"
        )
    stems = {re.sub(r"\d+", "", p.stem) for p in files}
    if len(stems) > 1:
        warnings.warn(
            f"*{split}*.h5 matched several kinds of file in {str(root)!r} ({[p.name for p in files]}); all are "
            f"concatenated. Write a {split}_files.txt listing the ones you want.",
            UserWarning,
            stacklevel=5,  # the caller of load_point_cloud_dataset
        )
    return files


def _listed_h5_files(root: Path, listing: Path, split: str) -> list[Path]:
    entries = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    files = []
    for entry in entries:
        candidate = root / Path(entry.replace("\\", "/")).name
        if not candidate.is_file():
            raise FileNotFoundError(f"{listing.name} lists {entry!r}, but {candidate.name!r} is not in {str(root)!r}")
        files.append(candidate)
    return files  # none: the split is refused as empty


def _h5_default_names(root: Path, files: list[Path]) -> list[str] | None:
    """The class names the folder implies: its `shape_names.txt`, or a known dataset's list, or `None`."""
    shape_names = root / "shape_names.txt"
    if shape_names.is_file():
        return [line.strip() for line in shape_names.read_text().splitlines() if line.strip()]
    hint = (str(root.resolve()) + " " + " ".join(p.name for p in files)).lower()
    if "scanobject" in hint or "objectdataset" in hint:
        return list(SCANOBJECTNN_CLASSES)
    if "modelnet40" in hint or "ply_data_" in hint:
        return list(MODELNET40_CLASSES)
    return None
