"""Labelled corpora for training: clips, their labels and speakers, and their licences.

A corpus folder is either in the RAVDESS layout (seven-field file names,
``Actor_NN`` folders) or any folder with a ``labels.csv`` (``path,label[,speaker]``).
Several corpora train one model; each has speakers of its own. A folder is read and
checked whole (:func:`read_corpus`) before any feature is computed from it.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
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


@dataclass(frozen=True)
class Corpus:
    """The clips of one corpus folder that train (their labels among the classes, sorted
    by path), and what reading the folder noticed, to be said before training."""

    name: str  # the folder's name
    clips: list[Clip]
    ignored: dict[str, int]  # labels not among the classes -> clips left out
    notes: list[str]  # duplicates used once, labels matched ignoring case, calm from neutral


LISTED = 5
"""Problems of a labels.csv named one by one in an error; the rest are counted."""


def read_corpus(
    folder: Path | str,
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    calm_from_neutral: bool = False,
    neutral_for_missing_calm: bool = True,
) -> Corpus:
    """The clips of ``folder`` whose label is one of ``classes``, checked whole before
    anything is computed from them.

    A ``labels.csv`` needs the columns ``path,label,speaker``; a short or malformed
    row, a listed file that is missing, or a path listed twice with another label or
    speaker is refused (:class:`DatasetError` naming the file and its lines). Labels
    match the classes ignoring case and surrounding spaces; other labels are left
    out and counted. A corpus with no calm clip at all (nEMO) has its neutral clips
    stand for calm when calm is a class: the nearest it recorded (ACCURACY.md).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"not a folder: {folder}")
    labels_csv = folder / "labels.csv"
    if labels_csv.is_file():
        rows, notes = _labels_csv_rows(labels_csv, classes)
    else:
        rows = [(0, c) for c in _ravdess_clips(folder, calm_from_neutral=calm_from_neutral)]
        notes = []
    labels = Counter(c.label for _, c in rows)
    if neutral_for_missing_calm and "calm" in classes and not labels["calm"] and labels["neutral"]:
        rows = [(n, replace(c, label="calm") if c.label == "neutral" else c) for n, c in rows]
        notes.append(f"no calm clip: its {labels['neutral']} neutral clips stand for calm")
    name = folder.resolve().name
    kept = [(n, replace(c, corpus=name)) for n, c in rows if c.label in classes]
    ignored = dict(sorted(Counter(c.label for _, c in rows if c.label not in classes).items()))
    if not kept:
        raise DatasetError(
            f"no labelled clips of classes {list(classes)} in {folder}"
            + (f" (its labels: {_counted(ignored)})" if ignored else "")
            + " (expected RAVDESS file names or a labels.csv with path,label,speaker)"
        )
    missing = [f"line {n}: {c.path}" for n, c in kept if not c.path.is_file()]
    if missing:
        raise DatasetError(
            f"{labels_csv}: {len(missing)} of the {len(kept)} files it lists for the classes "
            f"are missing: {_listed(missing)}"
        )
    return Corpus(name, sorted((c for _, c in kept), key=lambda c: str(c.path)), ignored, notes)


def find_clips(
    folder: Path | str,
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    calm_from_neutral: bool = False,
    neutral_for_missing_calm: bool = True,
) -> list[Clip]:
    """The clips of :func:`read_corpus`."""
    return read_corpus(
        folder,
        classes=classes,
        calm_from_neutral=calm_from_neutral,
        neutral_for_missing_calm=neutral_for_missing_calm,
    ).clips


def read_corpora(
    folders: Sequence[Path | str],
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    calm_from_neutral: bool = False,
    neutral_for_missing_calm: bool = True,
) -> list[Corpus]:
    """:func:`read_corpus` of several folders, each with speakers of its own."""
    corpora: list[Corpus] = []
    owner: dict[str, str] = {}
    for folder in folders:
        corpus = read_corpus(
            folder,
            classes=classes,
            calm_from_neutral=calm_from_neutral,
            neutral_for_missing_calm=neutral_for_missing_calm,
        )
        if any(c.name == corpus.name for c in corpora):
            raise DatasetError("the same corpus folder name is given twice")
        for clip in corpus.clips:
            if owner.setdefault(clip.speaker, clip.corpus) != clip.corpus:
                raise DatasetError(
                    f"speaker {clip.speaker!r} appears in {owner[clip.speaker]} and in "
                    f"{clip.corpus}: each corpus needs speaker ids of its own"
                )
        corpora.append(corpus)
    return corpora


def find_corpora(
    folders: Sequence[Path | str],
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    calm_from_neutral: bool = False,
    neutral_for_missing_calm: bool = True,
) -> list[Clip]:
    """The clips of several corpora (:func:`read_corpora`), in the folders' order."""
    corpora = read_corpora(
        folders,
        classes=classes,
        calm_from_neutral=calm_from_neutral,
        neutral_for_missing_calm=neutral_for_missing_calm,
    )
    return [clip for corpus in corpora for clip in corpus.clips]


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


def _labels_csv_rows(
    labels_csv: Path, classes: Sequence[str]
) -> tuple[list[tuple[int, Clip]], list[str]]:
    """Every row of a labels.csv as (line number, clip), and notes for the user;
    refuses the file unless every row is whole. Identical repeated rows are kept once."""
    try:
        with labels_csv.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            missing = [c for c in ("path", "label", "speaker") if c not in header]
            if missing:
                raise DatasetError(
                    f"{labels_csv} has no {' or '.join(missing)} column; its first line must "
                    "name the columns path,label,speaker (each clip's file relative to the "
                    "folder, its emotion, and who speaks: the protocol holds speakers out)"
                )
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{labels_csv} is not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DatasetError(f"{labels_csv}: unreadable CSV: {exc}") from None
    where = {c: header.index(c) for c in ("path", "label", "speaker")}
    by_name = {c.lower(): c for c in classes}
    problems: list[str] = []
    out: list[tuple[int, Clip]] = []
    first: dict[str, tuple[int, Clip]] = {}
    repeated: list[int] = []
    recased: Counter = Counter()
    for line, row in rows:
        if not any(v.strip() for v in row):
            continue  # a blank line
        if len(row) != len(header):
            problems.append(
                f"line {line}: {len(row)} field{'s' * (len(row) != 1)}, "
                f"the header has {len(header)}"
            )
            continue
        values = {c: row[i].strip() for c, i in where.items()}
        empty = [c for c, v in values.items() if not v]
        if empty:
            problems.append(f"line {line}: no {' or '.join(empty)}")
            continue
        label = by_name.get(values["label"].lower(), values["label"].lower())
        if label in classes and label != values["label"]:
            recased[f"{values['label']} -> {label}"] += 1
        clip = Clip(path=labels_csv.parent / values["path"], label=label, speaker=values["speaker"])
        key = os.path.normpath(clip.path)
        if key in first:
            earlier, seen = first[key]
            if (seen.label, seen.speaker) != (clip.label, clip.speaker):
                problems.append(
                    f"line {line}: {values['path']} is listed on line {earlier} too, as "
                    f"{seen.label} by {seen.speaker}, here as {clip.label} by {clip.speaker}"
                )
            else:
                repeated.append(line)
            continue
        first[key] = (line, clip)
        out.append((line, clip))
    if problems:
        raise DatasetError(
            f"{labels_csv}: {len(problems)} of its {len(rows)} rows cannot be used: "
            f"{_listed(problems)}"
        )
    notes = []
    if repeated:
        notes.append(
            (
                f"1 row repeats an earlier one (line {repeated[0]})"
                if len(repeated) == 1
                else f"{len(repeated)} rows repeat earlier ones (lines {_listed(map(str, repeated))})"
            )
            + ": each clip is used once"
        )
    if recased:
        notes.append(f"labels matched to the classes ignoring case: {_counted(recased)}")
    return out, notes


def _listed(items) -> str:
    items = list(items)
    more = len(items) - LISTED
    return "; ".join(items[:LISTED]) + (f"; and {more} more" if more > 0 else "")


def _counted(counts) -> str:
    return ", ".join(f"{label} ({n})" for label, n in counts.items())


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
