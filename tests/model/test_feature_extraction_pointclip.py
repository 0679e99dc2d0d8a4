"""Random arrays through the processor (issue 10): each either gives finite pixel values or raises one of the
documented exception types (`ValueError`, `TypeError`) with a one-line message. Bounded and derandomised."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from pointclip_hf import PointCLIPFeatureExtractor

DTYPES = st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.dtype(">f4"), np.bool_])
CLOUDS = arrays(DTYPES, array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=24))


@pytest.mark.parametrize("projection_style", ["pointclip_v1", "pointclip_v2"])
@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(cloud=CLOUDS, normalize=st.booleans(), reversed_rows=st.booleans())
def test_random_arrays_give_finite_pixels_or_a_documented_error(projection_style, cloud, normalize, reversed_rows):
    processor = PointCLIPFeatureExtractor(projection_style, num_points=16, image_size=16, normalize=normalize)
    cloud = cloud[::-1] if reversed_rows and cloud.ndim else cloud
    try:
        pixels = processor(cloud)["pixel_values"]
    except (ValueError, TypeError) as error:
        assert "\n" not in str(error) and str(error)
        return
    assert torch.isfinite(pixels).all()
    assert pixels.shape[1:] == (processor.num_views, 3, 16, 16)
