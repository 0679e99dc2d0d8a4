"""Search a collection of point clouds by text or by example: [`build_index`] embeds it into a folder (streaming,
resumable, sharded), [`PointCloudIndex`] loads and queries it."""

from .index_build import build_index
from .index_files import IndexFileError
from .point_cloud_index import PointCloudIndex

__all__ = ["IndexFileError", "PointCloudIndex", "build_index"]
