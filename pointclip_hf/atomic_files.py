"""Write a file or a folder so that readers never see half of it: write beside the target, flush, then rename. What is
written gets the permissions a plain `open(path, "w")` or `mkdir` would give (0644 / 0755 under the usual umask),
whatever the library that wrote it chose (`safetensors` and `tempfile` create 0600 / 0700). A failed write (a full
disk, a file-size limit) is an `OSError` that names the file ([`naming_the_file`])."""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


@contextlib.contextmanager
def naming_the_file(path: str | os.PathLike):
    """
    Raise an `OSError` that names no file (as `write` and `flush` raise them: `No space left on device`, `File too
    large`) again as one line that names `path`, with the same `errno`.

    Args:
        path (`str` or `os.PathLike`):
            The file (or folder) being written.
    """
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        named = OSError(f"Cannot write {os.fspath(path)!r}: {error.strerror or error}.")
        named.errno = error.errno
        raise named from error


def write_file_atomically(path: str | os.PathLike, data: bytes | Iterable[bytes]) -> None:
    """
    Write `data` to `path` through a temporary file in the same folder, replaced into place only once complete. When
    producing `data` raises, `path` is left as it was and the temporary file is removed.

    Args:
        path (`str` or `os.PathLike`):
            The file to write; its folder must exist.
        data (`bytes` or `Iterable[bytes]`):
            The whole content, or its pieces in order (streamed, so large files need not fit in memory).
    """

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            for piece in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
                handle.write(piece)

    save_file_atomically(path, write)


def save_file_atomically(path: str | os.PathLike, save: Callable[[Path], None]) -> None:
    """
    Write a file with `save(temporary_path)` (e.g. `safetensors.torch.save_file`), then rename it into place. When
    `save` raises, `path` is left as it was and the temporary file is removed.

    Args:
        path (`str` or `os.PathLike`):
            The file to write; its folder must exist.
        save (`Callable[[Path], None]`):
            Writes the whole file at the path it is given.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with naming_the_file(path):
            save(temporary)
            _flush_with_default_mode(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_folder_atomically(target: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """
    Write a folder with `write(temporary_folder)`, then swap it in: `target` is only ever replaced by a complete folder.
    Between the two renames the previous version is `target.old`, which readers may fall back to.

    Args:
        target (`str` or `os.PathLike`):
            The folder to (re)place.
        write (`Callable[[Path], None]`):
            Fills the temporary folder it is given (files only, no sub-folders).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}-tmp-", dir=target.parent))
    try:
        with naming_the_file(target):
            write(temporary)
        for path in temporary.iterdir():  # flush file contents before the rename makes them visible
            _flush_with_default_mode(path)
        os.chmod(temporary, 0o777 & ~_umask())
        old = target.with_name(target.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(temporary, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:  # after a failure; once renamed into place, `temporary` is gone
        shutil.rmtree(temporary, ignore_errors=True)


def _flush_with_default_mode(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put back at once
    os.umask(mask)
    return mask
