"""Labelled corpora for training: clips, their labels and speakers, and their licences.

A corpus folder is either in the RAVDESS layout (seven-field file names,
``Actor_NN`` folders) or any folder with a ``labels.csv`` (``path,label[,speaker]``).
Several corpora train one model; each has speakers of its own.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from callsort.errors import DatasetError
from callsort.settings import DEFAULT_CLASSES

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}


_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


@dataclass(frozen=True)
class Clip:
    """One labelled recording of one speaker."""

    path: Path
    label: str
    speaker: str
    corpus: str = ""  # the training folder's name


def find_clips(
    folder: Path | str,
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    calm_from_neutral: bool = False,
    neutral_for_missing_calm: bool = True,
) -> list[Clip]:
    """Labelled clips in ``folder`` whose label is one of ``classes``, sorted by path.

    A corpus with no calm clip at all (nEMO) has its neutral clips stand for calm
    when calm is a class: the nearest it recorded (measured in ACCURACY.md).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"not a folder: {folder}")
    labels_csv = folder / "labels.csv"
    clips = (
        _labels_csv_clips(labels_csv)
        if labels_csv.is_file()
        else _ravdess_clips(folder, calm_from_neutral=calm_from_neutral)
    )
    if neutral_for_missing_calm and "calm" in classes and not any(c.label == "calm" for c in clips):
        clips = [replace(c, label="calm") if c.label == "neutral" else c for c in clips]
    corpus = folder.resolve().name
    clips = sorted(
        (replace(c, corpus=corpus) for c in clips if c.label in classes), key=lambda c: str(c.path)
    )
    if not clips:
        raise DatasetError(
            f"no labelled clips of classes {list(classes)} in {folder} "
            "(expected RAVDESS file names or a labels.csv with path,label[,speaker])"
        )
    return clips


def find_corpora(
    folders: Sequence[Path | str],
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    calm_from_neutral: bool = False,
    neutral_for_missing_calm: bool = True,
) -> list[Clip]:
    """The clips of several corpora, each folder with its own speakers."""
    clips: list[Clip] = []
    owner: dict[str, str] = {}
    for folder in folders:
        found = find_clips(
            folder,
            classes=classes,
            calm_from_neutral=calm_from_neutral,
            neutral_for_missing_calm=neutral_for_missing_calm,
        )
        for clip in found:
            if owner.setdefault(clip.speaker, clip.corpus) != clip.corpus:
                raise DatasetError(
                    f"speaker {clip.speaker!r} appears in {owner[clip.speaker]} and in "
                    f"{clip.corpus}: each corpus needs speaker ids of its own"
                )
        clips.extend(found)
    if len({c.corpus for c in clips}) < len(folders):
        raise DatasetError("the same corpus folder name is given twice")
    return clips


def _ravdess_clips(folder: Path, *, calm_from_neutral: bool) -> list[Clip]:
    clips = []
    for path in folder.rglob("*"):
        match = _RAVDESS_NAME.match(path.stem)
        if not match or not path.is_file():
            continue
        emotion = RAVDESS_EMOTIONS.get(match.group(3), "")
        if emotion == "neutral" and calm_from_neutral:
            emotion = "calm"
        clips.append(Clip(path=path, label=emotion, speaker=match.group(7)))
    return clips


def _labels_csv_clips(labels_csv: Path) -> list[Clip]:
    with labels_csv.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DatasetError(f"{labels_csv} needs the columns path,label[,speaker]")
        return [
            Clip(
                path=labels_csv.parent / row["path"],
                label=row["label"].strip(),
                speaker=(row.get("speaker") or "").strip() or "unknown",
            )
            for row in reader
        ]


RAVDESS_LICENCE = (
    "Trained on the Ryerson Audio-Visual Database of Emotional Speech and Song (RAVDESS): "
    "Livingstone SR, Russo FA (2018) PLoS ONE 13(5): e0196391, "
    "https://doi.org/10.1371/journal.pone.0196391, licensed CC BY-NC-SA 4.0. "
    "This model is a derived work and is distributed under the same licence "
    "(Creative Commons Attribution-NonCommercial-ShareAlike 4.0): non-commercial use only."
)


def corpus_folders(data_dir: Path | str | Sequence[Path | str]) -> list[Path]:
    return [Path(data_dir)] if isinstance(data_dir, (str, Path)) else [Path(d) for d in data_dir]


def default_licence(data_dir: Path | str | Sequence[Path | str]) -> str:
    """The licence notice of each corpus: its README's "Licence" section when it has
    one, the RAVDESS notice for a RAVDESS-layout folder, else a prompt to state one."""
    folders = corpus_folders(data_dir)
    if len(folders) > 1:
        return "\n\n".join(f"{f.resolve().name}: {default_licence(f)}" for f in folders)
    folder = folders[0]
    section = _readme_licence(folder / "README.md")
    if section:
        return (
            f"{section} This model is a derived work of these recordings and is distributed "
            "under the same terms."
        )
    if (folder / "labels.csv").is_file():
        return "Trained on user-supplied data; its licence applies."
    return RAVDESS_LICENCE


def _readme_licence(readme: Path) -> str:
    """The text of a README's "## Licence..." section, on one line ('' if none)."""
    try:
        lines = readme.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    out: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("## "):
            inside = line[3:].strip().lower().startswith(("licence", "license"))
            continue
        if inside and line.strip():
            out.append(line.strip())
    return " ".join(out)
