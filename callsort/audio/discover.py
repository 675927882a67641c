"""Find the recordings to label: files and folders in, a sorted list out.

Folders are walked recursively, symlinked folders are followed once (a
symlink loop is never entered twice), and the output folder is never scanned.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from callsort.errors import UsageError

AUDIO_EXTENSIONS = frozenset(
    {
        ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3",
        ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64",
        ".sd2", ".voc", ".htk", ".nist", ".sph", ".paf", ".svx", ".xi",
    }
)  # fmt: skip
"""File name endings libsndfile can read (case-insensitive)."""


@dataclass(frozen=True)
class Recording:
    """A file to label: where it is, how the tables name it, and its identity.

    ``name`` is the path relative to the input root, with forward slashes; a
    name given with undecodable bytes (surrogate escapes) is stored as
    :func:`table_name` spells it, and ``recording_id`` (unless given) hashes
    the raw bytes, so a recording has one name and one id whichever way it
    was found.
    """

    path: Path
    name: str
    recording_id: str = ""

    def __post_init__(self) -> None:
        if not self.recording_id:
            object.__setattr__(self, "recording_id", recording_id(self.name))
        object.__setattr__(self, "name", table_name(self.name))


def recording_id(name: str) -> str:
    """Stable 16-hex-digit identifier of a recording's relative path (its bytes as on disk)."""
    return hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def table_name(name: str) -> str:
    """``name`` as valid UTF-8 for the tables.

    File names are bytes; those that are not UTF-8 reach Python with
    surrogate escapes, which Parquet and CSV cannot store. Undecodable bytes
    are written as ``\\xNN``; ``recording_id`` still hashes the raw bytes.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


def input_root(paths: Sequence[Path]) -> Path:
    """The folder that recording names are relative to.

    One folder: that folder. Otherwise the deepest folder holding every path
    (a single file's root is its own folder).
    """
    folders = [p if p.is_dir() else p.parent for p in (Path(os.path.abspath(p)) for p in paths)]
    return Path(os.path.commonpath(folders)) if folders else Path.cwd()


def find_recordings(
    paths: Sequence[Path | str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    skip: Sequence[Path | str] = (),
) -> list[Recording]:
    """Recordings under ``paths``, sorted by name, each listed once.

    ``include`` and ``exclude`` are glob patterns matched against the relative
    name and the file name (``*.wav``, ``2026-*/**``); ``skip`` lists folders
    never entered (the output folder). Files named explicitly are taken
    whatever their extension; inside folders only audio extensions count.
    """
    resolved = [Path(p) for p in paths]
    for p in resolved:
        if not os.path.lexists(p):
            raise UsageError(f"no such file or folder: {p}")
    root = input_root(resolved)
    skipped = {_real(Path(s)) for s in skip}
    found: dict[str, Recording] = {}
    unlistable: set[Path] = set()
    for p in resolved:
        if p.is_dir():
            candidates: Iterable[Path] = _walk(p, skipped, unlistable)
            explicit = False
        else:
            candidates = [p]
            explicit = True
        for file in candidates:
            if (
                not explicit
                and file.suffix.lower() not in AUDIO_EXTENSIONS
                and file not in unlistable
            ):
                continue
            name = _relative_name(file, root)
            if not _wanted(name, include, exclude):
                continue
            found.setdefault(name, Recording(path=file, name=name))
    return sorted(_distinct_names(found.values()), key=lambda r: r.name)


def _distinct_names(recordings: Iterable[Recording]) -> list[Recording]:
    """The recordings, none sharing a name in the tables.

    Two files whose raw names differ can share a table name (``caf\\xe9.wav``
    is also a valid file name); the ones that were not valid UTF-8 then get
    their id appended, ``caf\\xe9.wav [1f0c...]``, so every recording has a row of
    its own in the tables and the manifest.
    """
    by_name: dict[str, list[Recording]] = {}
    for r in recordings:
        by_name.setdefault(r.name, []).append(r)
    out = []
    for name, group in by_name.items():
        for r in group:
            if len(group) > 1 and recording_id(name) != r.recording_id:  # escaped, not literal
                r = Recording(
                    path=r.path, name=f"{name} [{r.recording_id}]", recording_id=r.recording_id
                )
            out.append(r)
    return out


def _walk(folder: Path, skipped: set[Path], unlistable: set[Path]) -> Iterator[Path]:
    """Files below ``folder``; each real folder entered at most once.

    A subfolder that cannot be listed is yielded itself, and added to
    ``unlistable``: analysing it fails with the reason, so its recordings do
    not vanish without a word. ``folder`` itself unlistable is a usage error.

    Real folders are walked before symlinked ones, so a folder reachable both
    ways is named by its real path.
    """
    seen: set[tuple[int, int]] = set()
    stack = [folder]
    linked: list[Path] = []
    while stack or linked:
        current = stack.pop() if stack else linked.pop()
        try:
            st = current.stat()
        except OSError:
            continue  # a dangling link or a folder that vanished
        key = (st.st_dev, st.st_ino)
        if key in seen or _real(current) in skipped:
            continue
        seen.add(key)
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            if current == folder:
                raise UsageError(f"cannot list {folder}: {exc.strerror or exc}") from None
            unlistable.add(current)
            yield current
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=True):
                    (linked if entry.is_symlink() else stack).append(Path(entry.path))
                elif entry.is_file(follow_symlinks=True) or entry.is_symlink():
                    yield Path(entry.path)
            except OSError:
                if entry.is_symlink():  # a symlink loop: listed, so it gets an error row
                    yield Path(entry.path)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _relative_name(file: Path, root: Path) -> str:
    absolute = Path(os.path.abspath(file))
    try:
        rel = absolute.relative_to(root)
    except ValueError:
        rel = Path(absolute.name)
    return rel.as_posix()


def _wanted(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    base = name.rsplit("/", 1)[-1]

    def matches(pattern: str) -> bool:
        return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(base, pattern)

    if include and not any(matches(p) for p in include):
        return False
    return not any(matches(p) for p in exclude)
