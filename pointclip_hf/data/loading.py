"""[`load_point_cloud_dataset`]: one split of any supported source, with the schema of [`point_features`]."""

import os
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
from datasets import Dataset

from ..io import SUPPORTED_EXTENSIONS
from .folder_tree import load_folder_tree
from .h5_folder import H5_EXTENSIONS, load_h5_folder
from .hub import load_hub_dataset, load_hub_folder
from .schema import check_class_names


def load_point_cloud_dataset(
    source: str | os.PathLike,
    split: str = "train",
    *,
    points_column: str | None = None,
    label_column: str | None = None,
    class_names: Sequence[str] | None = None,
    num_points: int | None = None,
    **load_kwargs,
) -> Dataset:
    """
    Load a point-cloud classification split as a `datasets.Dataset` (see the `pointclip_hf.data` documentation).

    Args:
        source (`str` or `os.PathLike`):
            A short name from `HUB_DATASETS`, a Hub dataset repo id, or a local folder (a dataset repo /
            `save_to_disk` folder, an h5 folder, or a class-folder tree).
        split (`str`, *optional*, defaults to `"train"`):
            The split to read (`"train"`, `"test"`, ...). Hub sources also accept `datasets` slicing such as
            `"train[:10%]"`.
        points_column (`str`, *optional*), label_column (`str`, *optional*):
            Column names, for Hub sources only; default: auto-detected.
        class_names (`Sequence[str]`, *optional*):
            The class names in label-id order, overriding what the source says.
        num_points (`int`, *optional*):
            Keep only the first `num_points` points of each cloud (as the reference's `pointcloud[:1024]`); clouds
            with fewer points are kept whole.
        **load_kwargs:
            Passed to `datasets.load_dataset` (`revision`, `cache_dir`, `data_files`, ...), Hub sources only.

    Returns:
        `datasets.Dataset`: columns `points` (`Array2D((None, 3), "float32")`) and `label` (`ClassLabel`).

    Raises:
        ValueError: unknown source or split, no usable points/label column, malformed or non-finite points, an
            empty dataset, or labels outside `class_names`.
        ImportError: an h5 folder without `h5py` installed.
    """
    num_points = _check_num_points(num_points)
    class_names = check_class_names(class_names)
    split = _check_split(split)
    path_like = isinstance(source, os.PathLike)
    text = os.fspath(source)
    if not isinstance(text, str):
        raise TypeError(f"source must be a str or os.PathLike, got {type(source).__name__}")
    path = Path(text).expanduser()
    hub_options = dict(
        points_column=points_column,
        label_column=label_column,
        class_names=class_names,
        num_points=num_points,
        load_kwargs=load_kwargs,
    )
    if path.is_dir():
        return _load_folder(path, text, split, **hub_options)
    return _load_named(path, text, path_like, split, **hub_options)


_FOLDER_KINDS = {"hub": "a Hub-style folder", "saved": "a save_to_disk folder", "h5": "an h5 folder",
                 "tree": "a class-folder tree"}  # fmt: skip


def _load_folder(path: Path, text: str, split: str, **hub_options) -> Dataset:
    """Read a folder by its kind, refusing the options that kind does not take (only `load_dataset` takes
    `load_kwargs`; a save_to_disk folder also has columns to pick)."""
    kind = _folder_kind(path)
    given = [name for name in ("points_column", "label_column") if hub_options[name] and kind in ("h5", "tree")]
    given += sorted(hub_options["load_kwargs"]) if kind != "hub" else []
    if given:
        raise TypeError(f"{', '.join(given)} do not apply to {text!r}, which is {_FOLDER_KINDS[kind]}")
    if kind in ("hub", "saved"):
        return load_hub_folder(path, kind == "saved", split, **hub_options)
    if kind == "h5":
        return load_h5_folder(path, split, hub_options["class_names"], hub_options["num_points"])
    return load_folder_tree(path, split, hub_options["class_names"], hub_options["num_points"])


def _load_named(path: Path, text: str, path_like: bool, split: str, **hub_options) -> Dataset:
    if path.exists():
        raise ValueError(
            f"{text!r} is a file, not a known dataset name, Hub repo or folder; "
            "use pointclip_hf.load_point_cloud to read a single point-cloud file"
        )
    return load_hub_dataset(text, path_like, split, **hub_options)


def _folder_kind(path: Path) -> str:
    """Which source a folder is: `"saved"` (`save_to_disk`), `"h5"`, `"hub"` (`load_dataset` reads it) or `"tree"`."""
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        return "saved"
    top = [p for p in path.iterdir() if not p.name.startswith(".")]
    if any(p.is_file() and p.suffix.lower() in H5_EXTENSIONS for p in top) or any(
        p.is_file() and p.name.endswith("_files.txt") for p in top
    ):
        return "h5"
    readme = path / "README.md"
    if readme.is_file() and readme.read_text(errors="replace").lstrip().startswith("---"):
        return "hub"  # a dataset card with a YAML header (configs / data_files)
    files = [p for depth in ("*", "*/*", "*/*/*") for p in path.glob(depth) if p.is_file()]
    suffixes = {p.suffix.lower() for p in files}
    if suffixes & {".parquet", ".arrow"}:
        return "hub"
    if suffixes & {".json", ".jsonl"} and not suffixes & set(SUPPORTED_EXTENSIONS):
        return "hub"  # json(l) data files; json beside point-cloud files is taken as metadata of a tree
    return "tree"


def _check_num_points(num_points) -> int | None:
    if num_points is None:
        return None
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)):
        raise TypeError(f"num_points must be an int or None, got {num_points!r}")
    if num_points <= 0:
        raise ValueError(f"num_points must be positive, got {num_points}")
    return int(num_points)


def _check_split(split) -> str:
    if isinstance(split, datasets.NamedSplit):
        split = str(split)
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string such as 'train' or 'test', got {split!r}")
    return split
