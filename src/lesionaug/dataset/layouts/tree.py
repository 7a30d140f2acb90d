"""One walk over a dataset folder: every folder and file name, junk skipped, symlinks kept inside.

Layout detection and the readers work on this listing, so the disk is listed once. The walk uses
``os.scandir`` (no stat per file), stops at ``MAX_DEPTH`` levels and remembers the real path of every
folder it entered. Folder symlinks are followed only inside the dataset: one that points back up the
tree is reported as ``symlink_loop`` and one that leads out of the root (to ``/``, a home folder) as
``symlink_outside``, and neither is entered. Both are problems to report, not damaged files.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lesionaug.dataset.files import IMAGE_SUFFIXES
from lesionaug.dataset.layouts.records import Problem

# Deep enough for PH2 (4 levels) inside a doubly nested download (3 more).
MAX_DEPTH = 8

_JUNK_DIRS = {"__macosx", ".git", ".ipynb_checkpoints", "__pycache__", ".hypothesis"}
_JUNK_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
# Never images or masks, though some have image extensions (DATASETS.md "always skip").
_NOT_SAMPLES = re.compile(r"(?i).*(_superpixels\.png|_features\.json)$|^(attribution|license)\.txt$")


def is_junk(name: str) -> bool:
    """OS and tool debris: ``__MACOSX``, AppleDouble ``._*`` files, ``.DS_Store``, any hidden entry."""
    low = name.lower()
    return name.startswith(".") or low in _JUNK_FILES or low in _JUNK_DIRS


def is_image_name(name: str) -> bool:
    """A file that may be an image or a mask: an image extension and not a known side file."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not _NOT_SAMPLES.match(name)


@dataclass
class Listing:
    dirs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


@dataclass
class Tree:
    """Folder listing under ``root``: relative POSIX folder path ('' for the root) -> its entries."""

    root: Path
    listings: dict[str, Listing]
    problems: list[Problem]

    def path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def depth(self, rel: str) -> int:
        return rel.count("/") + 1 if rel else 0

    def files(self, rel: str) -> list[str]:
        return self.listings[rel].files if rel in self.listings else []

    def image_files(self, rel: str) -> list[Path]:
        """Image-like files directly in a folder, sorted by name."""
        base = self.path(rel)
        return [base / n for n in sorted(self.files(rel)) if is_image_name(n)]

    def find_dirs(self, pattern: str, max_depth: int = 4) -> list[str]:
        """Folders whose name fully matches ``pattern`` (case-insensitive), shallowest first."""
        rx = re.compile(pattern, re.IGNORECASE)
        hits = [
            rel
            for rel in self.listings
            if rel and self.depth(rel) <= max_depth and rx.fullmatch(rel.rsplit("/", 1)[-1])
        ]
        hits.sort(key=lambda r: (self.depth(r), r))
        # A match inside another match is a nested copy (X/X/): keep the outer one, ``unwrap`` descends.
        outer: list[str] = []
        for rel in hits:
            if not any(rel.startswith(o + "/") for o in outer):
                outer.append(rel)
        return outer

    def find_files(self, pattern: str, max_depth: int = 5) -> list[str]:
        """Files (relative paths) whose name fully matches ``pattern`` (case-insensitive), shallowest first."""
        rx = re.compile(pattern, re.IGNORECASE)
        hits = []
        for rel, listing in self.listings.items():
            if self.depth(rel) + 1 > max_depth:
                continue
            hits.extend(f"{rel}/{n}" if rel else n for n in listing.files if rx.fullmatch(n))
        return sorted(hits, key=lambda r: (r.count("/"), r))

    def unwrap(self, rel: str) -> str:
        """Descend through doubly nested copies (``X/X/``): a folder with no images and one subfolder."""
        for _ in range(3):
            listing = self.listings.get(rel)
            if listing is None or len(listing.dirs) != 1 or any(is_image_name(n) for n in listing.files):
                return rel
            rel = f"{rel}/{listing.dirs[0]}" if rel else listing.dirs[0]
        return rel

    @property
    def n_files(self) -> int:
        return sum(len(listing.files) for listing in self.listings.values())


def is_within(real: str, root_real: str) -> bool:
    """``real`` is ``root_real`` or a path below it (both already resolved)."""
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def scan_tree(root: Path, max_depth: int = MAX_DEPTH) -> Tree:
    """List ``root`` recursively; raises OSError only when the root itself cannot be listed."""
    root = Path(root)
    listings: dict[str, Listing] = {}
    problems: list[Problem] = []
    root_real = os.path.realpath(root)
    visited: set[str] = {root_real}
    # Each stack entry: (relative path, real path, real paths of its ancestors).
    stack: list[tuple[str, str, tuple[str, ...]]] = [("", os.path.realpath(root), ())]
    first = True
    while stack:
        rel, real, ancestors = stack.pop()
        listing = Listing()
        listings[rel] = listing
        try:
            entries = sorted(os.scandir(root / rel if rel else root), key=lambda e: e.name)
        except OSError as exc:
            if first:
                raise
            problems.append(Problem("unreadable", str(root / rel), f"cannot list the folder ({exc.strerror})"))
            continue
        first = False
        for entry in entries:
            if is_junk(entry.name):
                continue
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError as exc:
                code = "symlink_loop" if exc.errno == errno.ELOOP else "unreadable"
                problems.append(Problem(code, entry.path, f"cannot follow ({exc.strerror})"))
                continue
            if is_dir:
                child_real = os.path.realpath(entry.path)
                if child_real == real or child_real in ancestors:
                    problems.append(
                        Problem(
                            "symlink_loop", entry.path, f"symlink points back to an enclosing folder ({child_real})"
                        )
                    )
                    continue
                if not is_within(child_real, root_real):
                    message = f"folder symlink leads outside the dataset (to {child_real}); not followed"
                    problems.append(Problem("symlink_outside", entry.path, message))
                    continue
                if child_real in visited or len(ancestors) + 1 > max_depth:
                    continue
                visited.add(child_real)
                listing.dirs.append(entry.name)
                stack.append((child_rel, child_real, ancestors + (real,)))
            elif is_file:
                listing.files.append(entry.name)
            elif entry.is_symlink():
                problems.append(Problem("unreadable", entry.path, "broken symlink (its target does not exist)"))
    return Tree(root, listings, problems)
