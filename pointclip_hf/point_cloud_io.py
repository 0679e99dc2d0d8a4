"""Kept for imports written before `pointclip_hf.io`: the readers live there, one module per format family."""

from .io import SUPPORTED_EXTENSIONS, PointCloudFileError, load_point_cloud

__all__ = ["SUPPORTED_EXTENSIONS", "PointCloudFileError", "load_point_cloud"]
