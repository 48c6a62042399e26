"""Writing files so that nothing half-written is ever seen and permissions are what ``open()`` gives.

Every file a command writes goes through ``atomic_write``: a hidden temporary ``.NAME.XXXX.tmp`` in
the destination folder, then ``os.replace``. ``tempfile.mkstemp`` creates it 0600 whatever the umask;
the result is re-permissioned to ``0o666 & ~umask`` (folders ``0o777 & ~umask``), as ``open()`` and
``mkdir()`` would, so a serving user or a shared folder can read outputs. Temporaries of the same
destination left behind by a killed run (``kill -9``) are removed on the next write once they are
older than ``STALE_SECONDS`` (a live writer's temporary is younger).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable

STALE_SECONDS = 3600


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def clean_stale_temporaries(path: Path, older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove ``.NAME.*.tmp`` files and folders of destination ``path`` older than ``older_than`` seconds."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    now = time.time()
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if now - tmp.lstat().st_mtime < older_than:
                continue
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
        except OSError:
            pass
    return removed


def refuse_special(path: Path) -> None:
    """FileExistsError when ``path`` exists and is not a regular file (not following a symlink)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError:
        return  # the write itself reports what is wrong
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):  # a folder: the write fails with IsADirectoryError
        return
    kind = "a symlink" if stat.S_ISLNK(mode) else "a device, FIFO or socket, not a regular file"
    raise FileExistsError(errno.EEXIST, f"it is {kind}; refusing to replace it (remove it or choose another path)",
                          str(path))


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary beside ``path``, then move it into place.

    On any error (or interruption) the temporary is removed and ``path`` is untouched. An existing
    ``path`` that is not a regular file (a symlink, a device node such as /dev/null, a FIFO, a socket)
    is refused (FileExistsError naming it): a rename would replace it silently."""
    path = Path(path)
    refuse_special(path)
    clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _full(folder: Path) -> bool:
    """Whether the file system of ``folder`` has (almost) no space left for this user."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 16)


def atomic_write_set(writers: dict) -> None:
    """Several files as one unit: ``{path: write(tmp_path)}`` fills a temporary beside each path, and
    only when every one is complete are they renamed into place (in the order given). On any error
    every temporary is removed and no path is touched; an OSError names the file it came from."""
    temporaries = {}
    try:
        for path, write in writers.items():
            path = Path(path)
            refuse_special(path)
            clean_stale_temporaries(path)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temporaries[path] = Path(tmp)
            try:
                write(Path(tmp))
                os.chmod(tmp, file_mode())
            except Exception as exc:  # OSError, or a library's own error for a full disk (safetensors, torch)
                code = getattr(exc, "errno", None) or (errno.ENOSPC if _full(path.parent) else errno.EIO)
                reason = getattr(exc, "strerror", None) or (os.strerror(code) if code == errno.ENOSPC else
                                                             (str(exc).strip().splitlines() or [type(exc).__name__])[0])
                raise OSError(code, f"cannot write {path}: {reason}; none of "
                              f"{', '.join(Path(p).name for p in writers)} was replaced") from None
        for path, tmp in temporaries.items():
            os.replace(tmp, path)
    except BaseException:
        for tmp in temporaries.values():
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def staging_dir(target: Path) -> Path:
    """A hidden folder beside ``target`` to build it in (``.NAME.XXXX.tmp``, mode as ``mkdir``)."""
    target = Path(target)
    clean_stale_temporaries(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(staging, dir_mode())
    return staging


def fix_tree_modes(root: Path) -> None:
    """Folders and files below ``root`` get the modes ``mkdir``/``open`` would give them (after a
    staging folder from ``mkdtemp``, or files copied from 0600 sources)."""
    root = Path(root)
    os.chmod(root, dir_mode())
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(Path(folder) / d, dir_mode())
        for f in files:
            p = Path(folder) / f
            if not p.is_symlink():
                os.chmod(p, file_mode())


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _same_folder(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.is_dir() and b.is_dir() and a.samefile(b)  # bind mounts, case-insensitive file systems
    except OSError:
        return False


def check_output_folder(inputs, out_dir) -> None:
    """Refuse (ValueError naming the input) an output folder where an output, named like its input,
    would replace that input: the input's own folder, also through symlinks or '..' (resolved, then
    compared with samefile), or an output path that is the input file itself (a hard link). An output
    folder inside an input folder's tree is fine: its files have other paths."""
    out_dir = Path(out_dir)
    for path in map(Path, inputs):
        target = out_dir / path.name
        clash = _same_folder(out_dir, path.parent)
        try:
            clash = clash or (target.exists() and path.exists() and target.samefile(path))
        except OSError:
            pass
        if clash:
            raise ValueError(f"refusing to overwrite the input {path}: -o {out_dir} is its folder (also through "
                             f"symlinks or '..'); choose another -o")
