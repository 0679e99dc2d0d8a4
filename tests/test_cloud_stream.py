"""The one cloud stream: shares, sources and batches."""

import numpy as np
import pytest
import torch
from conftest import synthetic_cloud

from pointclip_hf.cloud_stream import (
    ArraySource,
    FileSource,
    RowSource,
    list_point_cloud_files,
    process_share,
    stream_batches,
)
from pointclip_hf.model.processing_pointclip import processor_for_model


def test_process_shares_are_disjoint_and_cover_every_index():
    shares = [list(process_share(range(10), rank, 3)) for rank in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert list(process_share([4, 7, 9], 0, 1)) == [4, 7, 9]


def test_files_rows_and_arrays_stream_the_same_views_in_any_batch(zero_shot_model, tmp_path):
    rng = np.random.default_rng(0)
    clouds = [synthetic_cloud(i % 4, rng, num_points=100 + 30 * i) for i in range(5)]
    for i, cloud in enumerate(clouds):
        np.save(tmp_path / f"c{i}.npy", cloud)
    paths = list_point_cloud_files(tmp_path)
    extractor = processor_for_model(zero_shot_model).feature_extractor
    rows = [{"points": cloud, "label": i % 2} for i, cloud in enumerate(clouds)]
    sources = [
        (FileSource(paths, range(5), extractor), 2),
        (RowSource(rows, range(5), extractor, num_labels=2), 3),
        (ArraySource(clouds, extractor, torch.device("cpu")), 4),
    ]
    streamed = [list(stream_batches(source, extractor, torch.device("cpu"), size, 0)) for source, size in sources]
    expected = torch.cat([batch.pixel_values for batch in streamed[0]])
    for batches in streamed:
        assert [index for batch in batches for index in batch.indices] == [0, 1, 2, 3, 4]
        assert torch.equal(torch.cat([batch.pixel_values for batch in batches]), expected)
    assert [label for batch in streamed[1] for label in batch.labels] == [0, 1, 0, 1, 0]
    assert streamed[0][0].names == [f"Point cloud file {paths[0]!r}", f"Point cloud file {paths[1]!r}"]


def test_a_bad_row_label_and_a_bad_cloud_are_named(zero_shot_model):
    extractor = processor_for_model(zero_shot_model).feature_extractor
    rows = [{"points": np.zeros((0, 3), np.float32), "label": 0}, {"points": np.ones((8, 3)), "label": 5}]
    with pytest.raises(ValueError, match="Dataset row 1 has label 5"):
        list(stream_batches(RowSource(rows, [1], extractor, num_labels=2), extractor, torch.device("cpu"), 1, 0))
    with pytest.raises(ValueError, match="^Dataset row 0"):
        list(stream_batches(RowSource(rows, [0], extractor), extractor, torch.device("cpu"), 1, 0))
