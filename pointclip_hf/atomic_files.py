"""Write a file or a folder so that readers never see half of it: write beside the target, flush, then rename. A
failed write (a full disk, a file-size limit) is an `OSError` that names the file ([`naming_the_file`])."""

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
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with naming_the_file(path), open(temporary, "wb") as handle:
            for piece in [data] if isinstance(data, (bytes, bytearray, memoryview)) else data:
                handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_folder_atomically(target: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """
    Write a folder with `write(temporary_folder)`, then swap it in: `target` is only ever replaced by a complete folder.
    Between the two renames the previous version is `target.old`, which readers may fall back to.

    Args:
        target (`str` or `os.PathLike`):
            The folder to (re)place.
        write (`Callable[[Path], None]`):
            Fills the temporary folder it is given.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}-tmp-", dir=target.parent))
    try:
        with naming_the_file(target):
            write(temporary)
        for path in temporary.iterdir():  # flush file contents before the rename makes them visible
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        old = target.with_name(target.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(temporary, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
