"""Writing a file whole or not at all: through a temporary file beside it, then a rename.

The files edgecodec writes whole (outputs of compress/decompress, weights and cards, checkpoints,
rewritten logs, evaluation results, plots) go through ``atomic_path``, so a crash or a kill never
leaves half a file under the real name: readers see the old file or the new one. (Logs that grow
line by line are appended to; the ONNX export renames a whole folder.) The standard library has
no such helper (``tempfile`` makes the file, not the swap), hence this module.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

# The temporary files: ".NAME.XXXXXXXX.tmp" next to NAME (tempfile.mkstemp's 8 random characters).
# A killed run can leave one behind; remove_stale_temps removes those no live writer holds.
TEMP_PATTERN = r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp"
NAME_MAX = 255  # bytes in a file name (ext4, XFS, Btrfs, tmpfs, APFS, NTFS in UTF-16 units)


@contextmanager
def atomic_path(path: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; when the block ends without an
    error the file is synced to disk and takes the name ``path``. On an error (or Ctrl-C) the
    temporary file is removed and ``path`` is untouched.

    The temporary file is locked while it exists (``_locked_temp``), so ``remove_stale_temps``
    can tell a killed writer's leftover from a live one's. With ``overwrite=False`` the file is
    linked to its name rather than renamed over it, and FileExistsError is raised if the name
    was taken meanwhile (another run), which keeps that file. Written files get the mode a plain
    ``open`` would give (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    fd, tmp = _locked_temp(path)
    try:  # closing fd releases the lock: only once the file has its name, or is removed
        os.chmod(tmp, 0o666 & ~umask())
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if overwrite or not _link_no_clobber(tmp, path):
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """``path.write_text(text)`` through atomic_path (UTF-8): JSON, YAML, Markdown, HTML outputs."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path`` (created if missing) for the block, so that one process at a
    time does what it guards; no lock where there is no flock (Windows)."""
    with open(path, "a") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield  # closing the file releases the lock


class LockHeld(Exception):
    """``hold_lock``: another process holds the lock; ``owner`` is what it wrote in the file."""

    def __init__(self, owner: str) -> None:
        super().__init__(owner)
        self.owner = owner


# This process's held locks: resolved path -> [open file, holders]. flock locks belong to an open
# file, so a second open in the same process would be refused by the first: a notebook that makes a
# second Trainer for a run it has not closed is one user, not two.
_HELD: dict[Path, list] = {}


def hold_lock(path: Path) -> Path:
    """Take an exclusive flock on ``path`` (created if missing) without waiting, until
    ``release_lock`` of the path returned (resolved now: the working folder may change). Raises
    ``LockHeld`` when another process holds it. The holder writes its process id into the file
    for the other's message. No lock where there is none: no flock (Windows) or a file system
    without locks (some network mounts), as for ``_locked_temp``'s files."""
    key = Path(path).resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    f = open(key, "a+")
    try:
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                raise LockHeld(f.read().strip()) from None
            except OSError:  # ENOLCK, EOPNOTSUPP: held unlocked
                pass
        f.truncate(0)
        f.write(f"process {os.getpid()}\n")
        f.flush()
    except BaseException:
        f.close()
        raise
    _HELD[key] = [f, 1]
    return key


def release_lock(key: Path) -> None:
    """Give back one ``hold_lock`` of ``key`` (the path it returned); the last one closes the file
    (the file stays: removing it would race with a process opening it)."""
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]
        held[0].close()


def remove_stale_temps(root: Path, name_suffix: str = "") -> int:
    """Delete, anywhere under ``root``, the temporary files that killed writers left: regular
    files named like atomic_path's for a name ending in ``name_suffix`` (case-insensitive), and
    only those no live process holds locked, so another run writing into the same folder keeps
    its files. Returns how many were removed."""
    pattern = re.compile(TEMP_PATTERN)
    removed = 0
    if not root.is_dir():
        return 0
    for path in root.rglob(".*.tmp"):
        match = pattern.fullmatch(path.name)
        if not (match and match["name"].lower().endswith(name_suffix) and path.is_file() and not path.is_symlink()):
            continue
        try:
            with open(path, "rb") as f:
                if fcntl is not None:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live run: BlockingIOError
                path.unlink()
            removed += 1
        except OSError:  # held by a live run, gone meanwhile, or not lockable here: left as it is
            pass
    return removed


def umask() -> int:
    """The process's umask. Read from /proc where it can be: the os.umask set-and-restore that is
    the only portable way changes it for a moment, under other threads creating files."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _locked_temp(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path`` under an exclusive flock, which its writer holds until
    the file has its final name: remove_stale_temps then removes only the temporary files of
    killed runs, whose locks died with them, never a live run's."""
    while True:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
        if fcntl is None:  # no flock (Windows): cleanup cannot tell live from stale
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some network mounts): write unlocked
            return fd, tmp
        try:
            ours = os.path.samestat(os.stat(tmp), os.fstat(fd))
        except FileNotFoundError:
            ours = False
        if ours:
            return fd, tmp
        os.close(fd)  # a cleanup removed it between its creation and the lock: take another


def _temp_prefix(name: str) -> str:
    """``.NAME.`` for mkstemp, NAME cut at its start where the temporary name would pass the 255
    bytes a file name may have (mkstemp adds 8 characters and .tmp): an output named with 241 to
    255 bytes (85 CJK characters) could not be written. The end, with the suffix that
    remove_stale_temps matches, stays."""
    while len(os.fsencode(f".{name}.XXXXXXXX.tmp")) > NAME_MAX and len(name) > 1:
        name = name[1:]
    return f".{name}."


def _link_no_clobber(tmp: str, path: Path) -> bool:
    """Give the written file its name only if the name is free (a hard link fails on an existing
    name, where a rename replaces it); False where the file system has no hard links."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # e.g. FAT or some network file systems: fall back to the rename
        return False
    return True


__all__ = ["NAME_MAX", "TEMP_PATTERN", "atomic_path", "atomic_write_text", "exclusive_lock", "remove_stale_temps",
           "umask"]
