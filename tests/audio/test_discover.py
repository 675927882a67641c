"""Finding recordings: walking folders, filtering, naming, and identifying them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from callsort.audio.discover import find_recordings, recording_id
from callsort.errors import UsageError


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def names(recordings) -> list[str]:
    return [r.name for r in recordings]


@pytest.fixture
def archive(tmp_path) -> Path:
    """An input folder with audio at several depths and some non-audio files."""
    root = tmp_path / "archive"
    touch(
        root,
        "b.wav",
        "a.flac",
        "2026-01/call1.wav",
        "2026-01/call2.MP3",
        "2026-01/deep/x/call3.ogg",
        "2026-02/call4.wav",
        "2026-02/notes.txt",
        "2026-02/call4.wav.json",
        "README.md",
        "noext",
    )
    return root


def test_walks_recursively_and_keeps_only_audio_extensions(archive):
    assert names(find_recordings([archive])) == [
        "2026-01/call1.wav",
        "2026-01/call2.MP3",  # extension match ignores case
        "2026-01/deep/x/call3.ogg",
        "2026-02/call4.wav",
        "a.flac",
        "b.wav",
    ]


def test_paths_point_at_the_files(archive):
    for recording in find_recordings([archive]):
        assert recording.path.is_file()
        assert recording.path.resolve() == (archive / recording.name).resolve()


def test_order_is_sorted_and_deterministic(archive):
    first = names(find_recordings([archive]))
    assert first == sorted(first)
    assert names(find_recordings([archive])) == first
    assert names(find_recordings([archive / "2026-02", archive / "2026-01"])) == names(
        find_recordings([archive / "2026-01", archive / "2026-02"])
    )


def test_explicit_files_are_taken_whatever_their_extension(archive):
    found = find_recordings([archive / "2026-02" / "notes.txt", archive / "noext"])
    assert names(found) == ["2026-02/notes.txt", "noext"]


def test_single_explicit_file_is_named_by_its_file_name(archive):
    assert names(find_recordings([archive / "2026-01" / "deep" / "x" / "call3.ogg"])) == [
        "call3.ogg"
    ]


def test_a_file_given_twice_is_listed_once(archive):
    f = archive / "b.wav"
    assert names(find_recordings([archive, f, f])) == names(find_recordings([archive]))


def test_names_are_relative_to_the_input_root_with_forward_slashes(archive):
    for name in names(find_recordings([archive])):
        assert not name.startswith("/")
        assert "\\" not in name
        assert ".." not in name.split("/")
    # Two folders: names are relative to their common parent.
    assert names(find_recordings([archive / "2026-01", archive / "2026-02"])) == [
        "2026-01/call1.wav",
        "2026-01/call2.MP3",
        "2026-01/deep/x/call3.ogg",
        "2026-02/call4.wav",
    ]


def test_names_do_not_depend_on_relative_or_absolute_paths(archive, monkeypatch):
    absolute = names(find_recordings([archive]))
    monkeypatch.chdir(archive.parent)
    assert names(find_recordings([Path("archive")])) == absolute
    assert names(find_recordings(["archive/"])) == absolute


def test_include_globs_match_relative_name_or_file_name(archive):
    assert names(find_recordings([archive], include=["*.wav"])) == [
        "2026-01/call1.wav",
        "2026-02/call4.wav",
        "b.wav",
    ]
    assert names(find_recordings([archive], include=["2026-01/*"])) == [
        "2026-01/call1.wav",
        "2026-01/call2.MP3",
        "2026-01/deep/x/call3.ogg",
    ]
    assert names(find_recordings([archive], include=["call?.wav", "a.*"])) == [
        "2026-01/call1.wav",
        "2026-02/call4.wav",
        "a.flac",
    ]


def test_exclude_globs_win_over_include(archive):
    assert names(find_recordings([archive], exclude=["2026-*/**", "a.flac"])) == ["b.wav"]
    assert names(find_recordings([archive], include=["*.wav"], exclude=["call4.wav"])) == [
        "2026-01/call1.wav",
        "b.wav",
    ]


def test_globs_are_case_sensitive(archive):
    assert names(find_recordings([archive], include=["*.mp3"])) == []
    assert names(find_recordings([archive], include=["*.MP3"])) == ["2026-01/call2.MP3"]


def test_symlink_loop_is_not_followed_twice(archive):
    loop = archive / "2026-01" / "deep" / "x" / "back_to_2026-01"
    loop.symlink_to(archive / "2026-01", target_is_directory=True)
    (archive / "self").symlink_to(archive, target_is_directory=True)
    found = names(find_recordings([archive]))
    assert len(found) == len(set(found))
    real = {Path(os.path.realpath(r.path)) for r in find_recordings([archive])}
    assert len(real) == len(found) == 6  # every real file exactly once


def test_symlinked_folder_outside_the_root_is_followed(tmp_path, archive):
    elsewhere = tmp_path / "elsewhere"
    touch(elsewhere, "extra.wav")
    (archive / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert "linked/extra.wav" in names(find_recordings([archive]))


def test_folder_reachable_directly_and_via_symlink_keeps_its_real_name(tmp_path):
    root = tmp_path / "in"
    touch(root, "a/y.wav", "c/w.wav")
    (root / "c" / "alias").symlink_to(root / "a", target_is_directory=True)
    assert names(find_recordings([root])) == ["a/y.wav", "c/w.wav"]


def test_skip_folder_is_never_scanned(archive):
    out = archive / "callsort-reports"
    touch(out, "segments.wav", "nested/more.wav")
    assert not any(
        n.startswith("callsort-reports/") for n in names(find_recordings([archive], skip=[out]))
    )
    assert "callsort-reports/segments.wav" in names(find_recordings([archive]))


def test_skip_folder_reached_through_a_symlink_is_not_scanned(tmp_path, archive):
    out = archive / "out"
    touch(out, "old.wav")
    (archive / "out_link").symlink_to(out, target_is_directory=True)
    found = names(find_recordings([archive], skip=[out]))
    assert not any(n.endswith("old.wav") for n in found)
    assert len(found) == 6  # everything else is still there


def test_skip_given_as_a_relative_path(archive, monkeypatch):
    touch(archive, "out/old.wav")
    monkeypatch.chdir(archive)
    assert "out/old.wav" not in names(find_recordings([archive], skip=["out"]))


def test_recording_id_is_stable_16_hex_digits(archive):
    first = find_recordings([archive])
    second = find_recordings([archive])
    ids = [r.recording_id for r in first]
    assert ids == [r.recording_id for r in second]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    # the ids of earlier versions: a dataset keeps its ids across upgrades
    assert recording_id("2026-01/call1.wav") == "c4edd32a997c17bd"
    assert recording_id("2026-01/call1.WAV") == "658776c8d42ce077"


def test_recording_id_depends_on_the_name_not_the_location(tmp_path):
    touch(tmp_path / "one", "x/call.wav")
    touch(tmp_path / "two", "x/call.wav")
    (a,) = find_recordings([tmp_path / "one"])
    (b,) = find_recordings([tmp_path / "two"])
    assert a.name == b.name == "x/call.wav"
    assert a.recording_id == b.recording_id == recording_id("x/call.wav")


def test_recording_id_handles_undecodable_file_names():
    name = os.fsdecode(b"caf\xe9.wav")  # Latin-1 byte: a surrogate escape on a UTF-8 system
    assert re.fullmatch(r"[0-9a-f]{16}", recording_id(name))


def test_missing_path_is_a_usage_error(tmp_path, archive):
    with pytest.raises(UsageError, match="no such file or folder"):
        find_recordings([archive, tmp_path / "nope"])


def test_empty_folder_gives_no_recordings(tmp_path):
    assert find_recordings([tmp_path]) == []
