"""Run folders of ``python -m sim run``: checked before anything is written, and only
ever cleared when this tool made them.

A folder the tool creates gets a marker file (:data:`MARKER`). A later run may reuse
(empty and refill) a folder only when it carries that marker, is empty, or is the
tool's own default location under ``build/sim/`` (generated output, removed by
``make clean``). Anything else is refused with a :class:`golden.FormatError` naming
the folder: a non-empty folder without the marker, a file, a path whose parent is
missing or not a folder, a folder the user cannot write, and (whatever it holds)
the filesystem root, the home folder, the checkout and any folder that contains it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from golden.errors import FormatError

from tb.toolchain import BUILD, ROOT

MARKER = ".moe-rtl-run"
MARKER_TEXT = ("This folder was made by `python -m sim run`. A later run given this folder\n"
               "(--run-dir) deletes everything in it before writing its results.\n")
DEFAULT_PARENT = BUILD / "sim"


def _bad(path: Path, why: str) -> FormatError:
    return FormatError(f"run-dir: {path}: {why}")


def _protected(path: Path) -> str | None:
    """Why ``path`` may never be a run folder (None: it may)."""
    home = Path.home().resolve()
    if path == Path(path.anchor):
        return "is the filesystem root"
    if path == home:
        return "is your home folder"
    if path == ROOT or path in ROOT.parents:
        return "is or contains the moe-rtl checkout"
    return None


def is_default(path: Path) -> bool:
    """A folder the tool names itself: directly under ``build/sim/`` of the checkout."""
    return path.parent == DEFAULT_PARENT.resolve()


def check(path, *, default: bool = False) -> Path:
    """Validate a run folder without touching the file system; return it resolved.

    ``default``: the tool chose the path itself (its parents may be created).
    """
    path = Path(path).expanduser().resolve()
    why = _protected(path)
    if why:
        raise _bad(path, f"{why}; give a new or empty folder")
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise _bad(path, "exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise _bad(path, "folder is not writable")
        if not (path / MARKER).is_file() and not (default and is_default(path)):
            try:
                empty = next(path.iterdir(), None) is None
            except OSError as exc:
                raise _bad(path, f"cannot list the folder ({exc.strerror})") from None
            if not empty:
                raise _bad(path, f"folder is not empty and was not made by `python -m sim "
                                 f"run` (no {MARKER} file in it); nothing was changed. Give a "
                                 f"new or empty folder")
        return path
    parent = path.parent
    if default:          # the default location: the nearest existing ancestor must be a folder
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.exists():
        raise _bad(path, f"parent folder {parent} does not exist")
    if not parent.is_dir():
        raise _bad(path, f"{parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _bad(path, f"parent folder {parent} is not writable")
    return path


def prepare(path, *, default: bool = False) -> Path:
    """Check ``path`` (:func:`check`), then create it or empty it; write the marker.

    Call only once every other option has been validated: this is the first
    change to the file system a run makes."""
    path = check(path, default=default)
    try:
        if path.exists():
            for entry in path.iterdir():
                if entry.name == MARKER:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()       # a symlink is removed, never followed
        else:
            path.mkdir(parents=default)
        (path / MARKER).write_text(MARKER_TEXT)
    except OSError as exc:
        raise _bad(path, f"cannot prepare the folder ({exc.strerror or exc})") from None
    return path
