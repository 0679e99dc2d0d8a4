"""The one atomic writer: complete files or none, with the permissions of plain files and folders (safetensors and
tempfile create theirs 0600 / 0700)."""

import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from pointclip_hf.atomic_files import save_file_atomically, write_file_atomically, write_folder_atomically


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_files_and_folders_get_the_modes_of_plain_ones(tmp_path, umask):
    write_file_atomically(tmp_path / "a.json", b"{}")
    save_file_atomically(tmp_path / "b.safetensors", lambda path: save_file({"x": torch.zeros(2)}, path))
    write_folder_atomically(tmp_path / "run", lambda folder: save_file({"x": torch.zeros(2)}, folder / "c.safetensors"))
    assert mode(tmp_path / "a.json") == mode(tmp_path / "b.safetensors") == 0o666 & ~umask
    assert mode(tmp_path / "run" / "c.safetensors") == 0o666 & ~umask
    assert mode(tmp_path / "run") == 0o777 & ~umask
    assert os.umask(umask) == umask  # the writers leave the process's umask as it was


def test_a_failed_save_keeps_the_old_file(tmp_path):
    target = tmp_path / "b.safetensors"
    target.write_bytes(b"old")

    def fail(path):
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_file_atomically(target, fail)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["b.safetensors"]
