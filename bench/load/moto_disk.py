"""moto's S3 server with object bodies on disk and no descriptor held open between requests.

moto keeps each stored object in a ``SpooledTemporaryFile``: once an object is larger than
its buffer, that is an open file for as long as the object lives. Three tiers of a
20,000-file submission need more descriptors than this machine lets a process have, and
keeping ~30 GB in memory instead is not possible either. This stand-in keeps each body in
a named file opened only for the duration of a read or a write. Benchmark harness only:
the pipeline itself talks to it over HTTP exactly as to any S3 server.

    python bench/load/moto_disk.py -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import types


class DiskBuffer:
    """The file operations moto uses on an object body, against a named file opened per call."""

    def __init__(self, max_size: int = 0, *args: object, **kwargs: object) -> None:
        fd, self._path = tempfile.mkstemp(prefix="moto-key-")
        os.close(fd)
        self._pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = offset
        elif whence == 1:
            self._pos += offset
        else:
            self._pos = os.path.getsize(self._path) + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        with open(self._path, "rb") as fh:
            fh.seek(self._pos)
            data = fh.read(-1 if size is None or size < 0 else size)
        self._pos += len(data)
        return data

    def write(self, data: bytes) -> int:
        with open(self._path, "r+b") as fh:
            fh.seek(self._pos)
            fh.write(data)
        self._pos += len(data)
        return len(data)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        os.truncate(self._path, size)
        return size

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)


def main() -> None:
    import moto.s3.models as models
    from moto.server import main as moto_main

    names = {name: getattr(tempfile, name) for name in dir(tempfile) if not name.startswith("__")}
    models.tempfile = types.SimpleNamespace(**(names | {"SpooledTemporaryFile": DiskBuffer}))  # type: ignore[attr-defined]
    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
