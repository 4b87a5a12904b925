"""Walking a folder tree as folder runs and training data read it: linked folders followed, each
real folder once, in name order, never back up the tree. (``os.walk(followlinks=True)`` alone
walks a link back up the tree for ever and takes what lies beside the root; ``rglob`` leaves
linked folders out.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

WALKED = None  # the reasons walk_tree gives: a folder walked, ...
LOOP = "loop"  # ... a link to the root, a folder above it or one of the link's own parents: not walked
REPEAT = "repeat"  # ... a second name of a folder walked (or to be walked) under its own name: not walked


def contains(outer: str, inner: str) -> bool:
    """Whether the real path ``outer`` is ``inner`` or one of its parents."""
    try:
        return os.path.commonpath([outer, inner]) == outer
    except ValueError:  # paths on different drives (Windows)
        return False


def walk_tree(root: str | Path, skip: Callable[[str], bool] = lambda path: False,
              onerror: Callable[[OSError], None] | None = None) -> Iterator[tuple[str, list[str], str | None]]:
    """(folder, file names, why) for each folder under ``root``: ``why`` is ``WALKED`` (None) for a
    folder walked, ``LOOP`` or ``REPEAT`` for a linked folder left out (with no names). ``skip``:
    subfolders (their paths) not to walk at all; ``onerror``: os.walk's, for folders it cannot list."""
    root = os.fspath(root)
    top = os.path.realpath(root)
    walked: set[str] = set()
    for folder, subfolders, names in os.walk(root, onerror=onerror, followlinks=True):
        real = os.path.realpath(folder)
        why = WALKED
        if folder != root and os.path.islink(folder):
            if contains(real, top) or contains(real, os.path.realpath(os.path.dirname(folder))):
                why = LOOP
            elif contains(top, real) or real in walked:  # inside the tree: walked under its own name
                why = REPEAT
        elif real in walked:  # reached again through a linked parent
            why = REPEAT
        if why is not WALKED:
            subfolders[:] = []
            yield folder, [], why
            continue
        walked.add(real)
        subfolders[:] = sorted(name for name in subfolders if not skip(os.path.join(folder, name)))
        yield folder, names, WALKED
