"""Mono calls (issue 19): how well callsort tells the two speakers of a mono file apart.

Builds synthetic two-speaker calls from corpus clips (benchmarks/speaker_corpus.py:
RAVDESS and nEMO, speakers split in a FIT and a TEST half; half the pairs of the same
sex; plain, overlap and crosstalk cases) and one-speaker files (one speaker's clips in the
four emotions; and, as a voicemail or a monologue is, in one emotion), all 8 kHz mu-law
WAV: each call as stereo (agent left, customer right) and as the mono sum of the two. Then:

1. ``diarisation``: the mono files through callsort's own segmentation and diarisation
   (``callsort.run.analysis.mono_speakers``, the path ``callsort label`` takes): the
   diarisation error rate (0.25 s collar) against the known turns, and how often the
   one-speaker test is right on one- and two-speaker files. The test's threshold
   (``DiarisationSettings.min_separation``) is chosen on the FIT half; every figure
   published is from the TEST half (speakers unseen by the threshold; the speaker
   encoder, callsort.audio.voices, was trained on other corpora) and from the demo calls
   (sample_recordings/, RAVDESS actors 23 and 24, unseen by the threshold too).
2. ``labels``: ``callsort label --jobs 2 --channel-names agent,customer`` over the TEST
   calls and the demo calls, stereo and mono sums, side by side (wall time, CPU, peak
   memory of the largest process); agreement of the mono run's labels with the stereo
   run's over speech seconds, and of each call's customer escalation flag.

Writes benchmarks/results/diarisation.json. Needs the corpora (``CALLSORT_DATASETS``,
default ../shared/datasets beside the repo); without them it says so and exits 0. From
the repo root:

    nice -n 10 python benchmarks/diarisation.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.speaker_corpus import (  # noqa: E402
    DATASETS,
    FIT_SPEAKERS,
    SR,
    TELEPHONE_SR,
    TEST_SPEAKERS,
    Clip,
    clips_by_speaker,
    corpus_clips,
    telephone,
    trimmed,
)
from callsort.settings import DiarisationSettings  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "diarisation.json"
SAMPLES = REPO / "sample_recordings"
DEMO_CALLS = ("call_01_escalation.wav", "call_02_sad.wav", "call_03_happy.wav", "call_04_calm.wav")
SEED = 19
TURNS = 12  # per call, agent first, alternating
KINDS = ("plain", "overlap", "crosstalk")
CROSSTALK_DB = -20.0  # each channel hears the other this much lower, 10 ms later
LINE_NOISE_DB = -55.0
TURN_LEVEL_DB = -26.0
TURN_GAP_S = 1.0  # a speaker's segments closer than this are one turn (see turns_of)


def _level(y: np.ndarray, db: float) -> np.ndarray:
    return y * (10 ** (db / 20) / (np.sqrt(np.mean(y**2)) + 1e-9))


def build_call(
    agent: list[Clip], customer: list[Clip], *, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, list[list[tuple[float, float]]], list[str]]:
    """A two-speaker call at 16 kHz, ``(2, samples)`` (agent, customer), its turns per
    speaker and the customer's turn emotions; ``agent``/``customer``: each side's turns."""
    offset = {0: 0.0, 1: float(rng.uniform(-4, 4))}
    pieces, turns = [], [[], []]
    t = 0.5
    for k in range(TURNS):
        who = k % 2
        clip = (agent, customer)[who][k // 2]
        y = _level(trimmed(clip.path), TURN_LEVEL_DB + offset[who])
        if kind == "overlap" and k % 3 == 2:
            t = max(0.5, t - float(rng.uniform(0.3, 0.6)))  # starts before the other ends
        pieces.append((who, round(t * SR), y))
        turns[who].append((t, t + y.size / SR))
        t += y.size / SR + float(rng.uniform(0.3, 1.2))
    out = np.zeros((2, round((t + 0.5) * SR)), dtype=np.float32)
    for who, start, y in pieces:
        out[who, start : start + y.size] += y
    if kind == "crosstalk":
        d = round(0.010 * SR)
        leak = 10 ** (CROSSTALK_DB / 20)
        out = out + leak * np.pad(out[::-1], ((0, 0), (d, 0)))[:, : out.shape[1]]
    out += _level(rng.standard_normal(out.shape).astype(np.float32), LINE_NOISE_DB)
    return out, turns, [c.emotion for c in customer]


def write_telephone(path: Path, channels: np.ndarray) -> None:
    """``(channels, samples)`` 16 kHz as an 8 kHz mu-law WAV through a telephone line."""
    line = np.stack([telephone(c) for c in channels])
    line *= 10 ** (-3 / 20) / max(float(np.abs(line).max()), 1e-9)
    narrow = soxr.resample(line.T.astype(np.float64), SR, TELEPHONE_SR)
    sf.write(path, np.clip(narrow, -1, 1), TELEPHONE_SR, subtype="ULAW")


def build(out: Path, speakers: tuple[str, ...], *, n_calls: int, n_single: int, seed: int) -> dict:
    """Write ``stereo/``, ``mono/`` and ``single/`` under ``out``; the truth of each file."""
    rng = np.random.default_rng(seed)
    by_speaker = clips_by_speaker(speakers)
    names = sorted(by_speaker)
    sex = {s: by_speaker[s][0].sex for s in names}
    for d in ("stereo", "mono", "single"):
        (out / d).mkdir(parents=True, exist_ok=True)
    truth: dict = {"calls": {}, "single": {}}

    def pick(speaker: str, emotions: list[str]) -> list[Clip]:
        pool = by_speaker[speaker]
        return [
            pool[rng.choice([i for i, c in enumerate(pool) if c.emotion == e] or range(len(pool)))]
            for e in emotions
        ]

    for i in range(n_calls):
        a = names[rng.integers(len(names))]
        corpus = a.split("-")[0]
        same = i % 2 == 0
        partners = [
            s for s in names if s != a and s.startswith(corpus) and (sex[s] == sex[a]) == same
        ]
        b = partners[rng.integers(len(partners))]
        kind = KINDS[i % len(KINDS)]
        escalation = i % 4 in (0, 1)
        moods = (
            ["calm"] * 3 + ["angry"] * 3
            if escalation
            else [["calm", "sad", "happy", "angry"][i % 4]] * (TURNS // 2)
        )
        audio, turns, emotions = build_call(
            pick(a, ["calm"] * (TURNS // 2)), pick(b, moods), kind=kind, rng=rng
        )
        name = f"call_{i:03d}.wav"
        write_telephone(out / "stereo" / name, audio)
        write_telephone(out / "mono" / name, audio.mean(axis=0, keepdims=True))
        truth["calls"][name] = {
            "agent": a,
            "customer": b,
            "same_sex": same,
            "kind": kind,
            "turns": turns,
            "customer_emotions": emotions,
        }
    for i in range(n_single):
        s = names[rng.integers(len(names))]
        emotions = [["calm", "angry", "sad", "happy"][(i + k) % 4] for k in range(TURNS // 2)]
        y, turns, _ = build_call(pick(s, emotions), pick(s, emotions), kind="plain", rng=rng)
        name = f"single_{i:03d}.wav"
        write_telephone(out / "single" / name, y.sum(axis=0, keepdims=True))
        truth["single"][name] = {"speaker": s, "turns": [turns[0] + turns[1]]}
    truth["one_emotion"] = build_one_emotion(out, by_speaker, n_files=n_single, seed=seed)
    (out / "truth.json").write_text(json.dumps(truth))
    return truth


def build_one_emotion(
    out: Path, by_speaker: dict[str, list[Clip]], *, n_files: int, seed: int
) -> dict:
    """Write ``one_emotion/`` under ``out``: one-speaker files whose turns are all in one
    emotion (calm, angry, sad, happy in turn), as a voicemail or a monologue is; their
    truth. Their own random stream, so that the other files do not change."""
    rng = np.random.default_rng([seed, 1])
    names = sorted(by_speaker)
    (out / "one_emotion").mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(n_files):
        s = names[rng.integers(len(names))]
        emotion = ["calm", "angry", "sad", "happy"][i % 4]
        pool = [c for c in by_speaker[s] if c.emotion == emotion] or by_speaker[s]
        halves = [[pool[rng.integers(len(pool))] for _ in range(TURNS // 2)] for _ in range(2)]
        y, turns, _ = build_call(*halves, kind="plain", rng=rng)
        name = f"one_emotion_{i:03d}.wav"
        write_telephone(out / "one_emotion" / name, y.sum(axis=0, keepdims=True))
        truth[name] = {"speaker": s, "emotion": emotion, "turns": [turns[0] + turns[1]]}
    return truth


def built_halves(work: Path, *, n_calls: int = 36, n_single: int = 20) -> dict:
    """The truth of the FIT and TEST halves' files under ``work`` (``work/fit``,
    ``work/test``), built there first when they are not."""
    truths = {}
    for half, speakers, seed in (("fit", FIT_SPEAKERS, SEED), ("test", TEST_SPEAKERS, SEED + 1)):
        folder = work / half
        if not (folder / "truth.json").exists():
            truths[half] = build(folder, speakers, n_calls=n_calls, n_single=n_single, seed=seed)
            continue
        truth = json.loads((folder / "truth.json").read_text())
        if "one_emotion" not in truth:  # built before the one-emotion files were
            truth["one_emotion"] = build_one_emotion(
                folder, clips_by_speaker(speakers), n_files=len(truth["single"]), seed=seed
            )
            (folder / "truth.json").write_text(json.dumps(truth))
        truths[half] = truth
    return truths


def speakers_of(path: Path, settings) -> object:
    """callsort's speakers of the mono file ``path`` (the path of ``callsort label``)."""
    from callsort.audio.decode import probe
    from callsort.audio.segment import frame_measures, speech_segments
    from callsort.run.analysis import decode_mono, mono_speakers

    y = decode_mono(path)
    frame = round(settings.segmentation.frame_s * SR)
    energy, zcr = frame_measures(y, frame_length=frame)
    segments = speech_segments(energy, zcr, settings=settings.segmentation)
    return mono_speakers(path, probe(path), settings, segments, kept=y[np.newaxis, :])


GROUPS = {"calls": "mono", "single": "single", "one_emotion": "one_emotion"}  # and folders


def diarisation_figures(
    folder: Path, truth: dict, settings, *, groups: tuple[str, ...] = tuple(GROUPS)
) -> dict:
    """Per file of ``groups``: the separation, the DER with two speakers imposed, and
    under ``auto``."""
    from callsort.audio.diarise import diarisation_error

    two = replace(settings, diarisation=replace(settings.diarisation, speakers=2))
    rows = {}
    for group in groups:
        sub = GROUPS[group]
        for name, t in truth.get(group, {}).items():
            spk = speakers_of(folder / sub / name, two)
            one = [sorted(sum(spk.segments, []))]
            rows[name] = {
                "group": group,
                "separation": spk.separation,
                "similarity": spk.similarity,
                "der_two": diarisation_error(t["turns"], turns_of(spk.segments)),
                "der_one": diarisation_error(t["turns"], turns_of(one)),
                "der_two_segments": diarisation_error(t["turns"], spk.segments),
                "der_one_segments": diarisation_error(t["turns"], one),
                **{k: t[k] for k in ("same_sex", "kind", "speaker", "emotion") if k in t},
            }
    return rows


def turns_of(segments: list) -> list:
    """The hypothesis's turns: each speaker's segments joined across pauses under
    ``TURN_GAP_S``, as the reference's turns (whole corpus clips) hold their pauses (up to
    0.8 s within a RAVDESS sentence); the other speaker's turns between two of a
    speaker's are longer than that, so no two turns are joined across one of them."""
    from callsort.audio.diarise import speaker_turns

    return speaker_turns(segments, max_gap_s=TURN_GAP_S)


def threshold(rows: dict) -> float:
    """The separation threshold that classifies FIT files best (balanced accuracy): the
    two-speaker calls against the one-speaker files in four emotions (as it was chosen
    before the one-emotion files were measured), the files whose clusters sound alike
    (``DiarisationSettings.max_similarity``) left to the similarity test."""
    limit = DiarisationSettings().max_similarity
    rows = {
        k: r
        for k, r in rows.items()
        if r["similarity"] < limit and r["group"] in ("calls", "single")
    }
    seps = np.array([r["separation"] for r in rows.values()])
    two = np.array([r["group"] == "calls" for r in rows.values()])
    best, best_t = -1.0, 0.0
    for t in np.unique(seps):
        acc = ((seps[two] >= t).mean() + (seps[~two] < t).mean()) / 2
        if acc > best:
            best, best_t = acc, float(t)
    below = seps[seps < best_t]
    return float((best_t + below.max()) / 2) if below.size else best_t


def two_found(r: dict, min_separation: float) -> bool:
    """Whether ``--speakers auto`` splits the file of row ``r`` at ``min_separation``."""
    from callsort.audio.diarise import heard_as_two

    settings = replace(DiarisationSettings(), min_separation=min_separation)
    return heard_as_two(r["separation"], r["similarity"], settings=settings)


def summarise(rows: dict, min_separation: float) -> dict:
    calls = [r for r in rows.values() if r["group"] == "calls"]
    single = [r for r in rows.values() if r["group"] == "single"]
    steady = [r for r in rows.values() if r["group"] == "one_emotion"]

    def auto_der(r: dict) -> float:
        return r["der_two"] if two_found(r, min_separation) else r["der_one"]

    def kept_whole(files: list[dict]) -> float | None:
        return float(np.mean([not two_found(r, min_separation) for r in files])) if files else None

    out = {
        "der_two_imposed_segments_mean": float(np.mean([r["der_two_segments"] for r in calls])),
        "n_two_speaker_files": len(calls),
        "n_one_speaker_files": len(single),
        "der_two_imposed_mean": float(np.mean([r["der_two"] for r in calls])),
        "der_auto_mean": float(np.mean([auto_der(r) for r in calls])),
        "two_speaker_files_found_two": float(
            np.mean([two_found(r, min_separation) for r in calls])
        ),
        "one_speaker_files_kept_whole": kept_whole(single),
        "n_one_emotion_files": len(steady),
        "one_emotion_files_kept_whole": kept_whole(steady),
    }
    # RAVDESS actors act each emotion (but neutral) at a normal and a strong intensity
    for corpus in ("ravdess", "nemo"):
        files = [r for r in steady if r["speaker"].startswith(corpus)]
        out[f"one_emotion_files_kept_whole_{corpus}"] = kept_whole(files)
        out[f"n_one_emotion_files_{corpus}"] = len(files)
    for key, test in (
        ("same_sex", lambda r: r["same_sex"]),
        ("mixed_sex", lambda r: not r["same_sex"]),
        *((k, (lambda r, k=k: r["kind"] == k)) for k in KINDS),
    ):
        sel = [auto_der(r) for r in calls if test(r)]
        out[f"der_auto_{key}"] = float(np.mean(sel)) if sel else None
    return out


def demo_mono(out: Path) -> dict:
    """Mono sums of the demo calls (8 kHz mu-law) under ``out``; their turns."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    with (SAMPLES / "ground_truth.csv").open(encoding="utf-8") as f:
        gt = list(csv.DictReader(f))
    truth = {}
    for name in DEMO_CALLS:
        y, sr = sf.read(SAMPLES / name, dtype="float32")
        sf.write(out / name, y.mean(axis=1), sr, subtype="ULAW")
        truth[name] = {
            "turns": [
                [
                    (float(r["start_s"]), float(r["end_s"]))
                    for r in gt
                    if r["recording"] == name and r["channel"] == ch
                ]
                for ch in ("left", "right")
            ],
            "same_sex": False,
            "kind": "demo",
        }
    return truth


def label_runs(work: Path, demo_truth: dict, n_calls: int) -> dict:
    """``callsort label --jobs 2`` over the TEST calls and the demo calls, stereo and mono
    sums, side by side; the mono run's agreement with the stereo run."""
    from benchmarks.throughput import run_command

    test_truth = json.loads((work / "test" / "truth.json").read_text())["calls"]
    test = sorted(test_truth)[:n_calls]
    truth = {name: test_truth[name]["turns"] for name in test}
    truth.update({f"demo_{n}": t["turns"] for n, t in demo_truth.items()})
    folders = {}
    for mode in ("stereo", "mono"):
        folder = work / "labels" / mode
        folder.mkdir(parents=True, exist_ok=True)
        for name in test:
            link = folder / name
            if not link.exists():
                link.symlink_to(work / "test" / mode / name)
        for name in DEMO_CALLS:
            source = SAMPLES / name if mode == "stereo" else work / "demo" / name
            link = folder / f"demo_{name}"
            if not link.exists():
                link.symlink_to(source)
        folders[mode] = folder
    runs, tables = {}, {}
    modes = {
        "stereo": ("stereo", []),
        "mono": ("mono", []),
        "mono_two": ("mono", ["--speakers", "2"]),
        "fast_stereo": ("stereo", ["--model", "fast"]),
        "fast_mono": ("mono", ["--model", "fast"]),
    }
    for mode, (source, extra) in modes.items():
        out = work / "labels" / f"out-{mode}"
        shutil.rmtree(out, ignore_errors=True)
        args = ["label", str(folders[source]), "--out", str(out), "--jobs", "2", "-q"]
        runs[mode] = run_command(
            [*args, "--segments-csv", "--channel-names", "agent,customer", *extra]
        )
        print(f"label {mode}: {runs[mode]['wall_s']:.1f} s wall", flush=True)
        import pandas as pd

        tables[mode] = (pd.read_csv(out / "segments.csv"), pd.read_csv(out / "calls.csv"))
    names = sorted({str(r) for r in tables["stereo"][1]["recording"]})
    out: dict = {
        "stereo": runs["stereo"],
        "mono": runs["mono"],
        "mono_two": runs["mono_two"],
        "mono_speed_vs_stereo": runs["stereo"]["wall_s"] / runs["mono"]["wall_s"],
        "mono_cpu_vs_stereo": runs["stereo"]["cpu_s"] / runs["mono"]["cpu_s"],
        "fast_stereo": runs["fast_stereo"],
        "fast_mono": runs["fast_mono"],
        "fast_mono_speed_vs_stereo": runs["fast_stereo"]["wall_s"] / runs["fast_mono"]["wall_s"],
        "fast_mono_cpu_vs_stereo": runs["fast_stereo"]["cpu_s"] / runs["fast_mono"]["cpu_s"],
    }
    for mode in ("mono", "mono_two"):
        pair = {"stereo": tables["stereo"], "mono": tables[mode]}
        per_call = {name: agreement(name, pair, truth[name]) for name in names}
        out[f"{mode}_calls"] = per_call
        for group, test_name in (
            ("synthetic", lambda n: not n.startswith("demo_")),
            ("demo", lambda n: n.startswith("demo_")),
        ):
            rows = [r for n, r in per_call.items() if test_name(n)]
            out[f"{mode}_{group}"] = {
                "n_calls": len(rows),
                "customer_escalation_agrees": float(
                    np.mean([r["escalation_agrees"] for r in rows])
                ),
                "label_agreement_speech_s": float(
                    sum(r["agree_s"] for r in rows) / sum(r["speech_s"] for r in rows)
                ),
                "customer_label_agreement_speech_s": float(
                    sum(r["customer_agree_s"] for r in rows) / sum(r["customer_s"] for r in rows)
                ),
                "stereo_customer_escalated": int(sum(r["stereo_escalated"] for r in rows)),
                "mono_split_in_two": float(np.mean([r["mono_split"] for r in rows])),
            }
    return out


def agreement(name: str, tables: dict, turns: list, step_s: float = 0.01) -> dict:
    """Of one call: over the stereo run's speech seconds of each side within that side's
    true ``turns`` (agent's, customer's; a channel's crosstalk, the other side's voice,
    left out), how many the mono run labels alike (its channel of that speaker, or its
    one channel when it kept the file whole); whether the customer's escalation flags
    agree."""
    (s_seg, s_calls), (m_seg, m_calls) = tables["stereo"], tables["mono"]
    s_seg, m_seg = s_seg[s_seg.recording == name], m_seg[m_seg.recording == name]
    m_calls, s_calls = m_calls[m_calls.recording == name], s_calls[s_calls.recording == name]
    split = set(m_calls.channel.astype(str)) >= {"agent", "customer"}
    end = max(s_seg.end_s.max(), m_seg.end_s.max() if len(m_seg) else 0.0)
    t = (np.arange(int(end / step_s) + 1) + 0.5) * step_s

    def labels_on_grid(seg) -> np.ndarray:
        out = np.full(t.size, "", dtype=object)
        for a, b, label in zip(seg.start_s, seg.end_s, seg.label, strict=True):
            out[(t >= a) & (t < b)] = label
        return out

    result = {"mono_split": split, "agree_s": 0.0, "speech_s": 0.0}
    for role, true_turns in zip(("agent", "customer"), turns, strict=True):
        ref = labels_on_grid(s_seg[s_seg.channel == role])
        ours = labels_on_grid(m_seg[m_seg.channel == (role if split else "mono")])
        inside = np.zeros(t.size, dtype=bool)
        for a, b in true_turns:
            inside |= (t >= a) & (t < b)
        speech = (ref != "") & inside
        agree = float(((ref == ours) & speech).sum() * step_s)
        result["agree_s"] += agree
        result["speech_s"] += float(speech.sum() * step_s)
        if role == "customer":
            result["customer_agree_s"], result["customer_s"] = agree, float(speech.sum() * step_s)

    def escalated(calls, channel: str) -> bool:
        row = calls[calls.channel == channel]
        return bool(len(row) and str(row.escalated.iloc[0]).lower() == "true")

    result["stereo_escalated"] = escalated(s_calls, "customer")
    result["mono_escalated"] = escalated(m_calls, "customer" if split else "mono")
    result["escalation_agrees"] = result["stereo_escalated"] == result["mono_escalated"]
    return result


def markdown(results: dict) -> str:
    """The README's table of the figures (TEST speakers and demo calls)."""
    t, demo = results["test"], results["demo"]
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f} %"  # noqa: E731
    lines = [
        "| measured on | figure | value | target |",
        "|---|---|---|---|",
        f"| {t['n_two_speaker_files']} synthetic two-speaker calls (TEST speakers) | DER, "
        f"`--speakers 2` | {pct(t['der_two_imposed_mean'])} | <= 10 % |",
        f"| same | DER, `--speakers auto` | {pct(t['der_auto_mean'])} | <= 10 % |",
        f"| same, same-sex / mixed pairs | DER, `auto` | {pct(t['der_auto_same_sex'])} / "
        f"{pct(t['der_auto_mixed_sex'])} | |",
        f"| same, plain / overlap / crosstalk | DER, `auto` | {pct(t['der_auto_plain'])} / "
        f"{pct(t['der_auto_overlap'])} / {pct(t['der_auto_crosstalk'])} | |",
        f"| same | found two speakers (`auto`) | {pct(t['two_speaker_files_found_two'])} "
        "| >= 95 % |",
        f"| {t['n_one_speaker_files']} one-speaker files (TEST speakers) | kept whole (`auto`) "
        f"| {pct(t['one_speaker_files_kept_whole'])} | >= 95 % |",
        *(
            [
                f"| {t['n_one_emotion_files']} one-speaker files in one emotion (TEST "
                f"speakers) | kept whole (`auto`) | {pct(t['one_emotion_files_kept_whole'])} "
                "| >= 95 % |",
                f"| same, {t['n_one_emotion_files_ravdess']} RAVDESS (normal and strong "
                f"intensity) / {t['n_one_emotion_files_nemo']} nEMO | kept whole (`auto`) | "
                f"{pct(t['one_emotion_files_kept_whole_ravdess'])} / "
                f"{pct(t['one_emotion_files_kept_whole_nemo'])} | |",
            ]
            if t.get("n_one_emotion_files")
            else []
        ),
        f"| {len(demo)} demo calls, mono sums | DER, `--speakers 2` | "
        f"{pct(results['demo_der_two_mean'])} | <= 10 % |",
        f"| same | DER, `auto` (split: "
        f"{sum(r['n_speakers_auto'] == 2 for r in demo.values())} of {len(demo)}) | "
        f"{pct(results['demo_der_auto_mean'])} | <= 10 % |",
    ]
    labels = results.get("labels")
    if labels:
        for mode, name in (("mono", "`auto`"), ("mono_two", "`--speakers 2`")):
            for group in ("synthetic", "demo"):
                g = labels[f"{mode}_{group}"]
                lines.append(
                    f"| {g['n_calls']} {group} calls, mono {name} vs stereo | customer "
                    f"escalation flag agrees / labels agree (speech s) | "
                    f"{pct(g['customer_escalation_agrees'])} / "
                    f"{pct(g['label_agreement_speech_s'])} | >= 90 % / >= 85 % |"
                )
        lines.append(
            f"| the same audio, `--jobs 2` | mono speed / stereo speed (wall) | "
            f"{labels['mono_speed_vs_stereo']:.2f} | >= 0.5 |"
        )
        lines.append(
            f"| same | largest process, mono / stereo | {labels['mono']['max_rss_mb']:.0f} MB / "
            f"{labels['stereo']['max_rss_mb']:.0f} MB | < 1 GB |"
        )
        if "fast_mono_speed_vs_stereo" in labels:
            lines.append(
                "| same, `--model fast` | mono speed / stereo speed (wall) | "
                f"{labels['fast_mono_speed_vs_stereo']:.2f} | >= 0.5 |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, help="folder for the built calls (default: a temp dir)"
    )
    parser.add_argument("--calls", type=int, default=36, help="two-speaker calls per half")
    parser.add_argument("--single", type=int, default=20, help="one-speaker files per half")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--label-calls", type=int, default=18, help="TEST calls labelled stereo and mono"
    )
    parser.add_argument("--skip-labels", action="store_true", help="diarisation figures only")
    args = parser.parse_args()
    if not corpus_clips():
        print(f"no corpora under {DATASETS}: nothing measured")
        return
    from callsort.run.options import analysis_settings

    work = args.work or Path(tempfile.mkdtemp(prefix="callsort-diarisation-"))
    settings = analysis_settings()
    results: dict = {"command": "nice -n 10 python benchmarks/diarisation.py", "settings": {}}
    started = time.perf_counter()
    rows = {}
    for half, truth in built_halves(work, n_calls=args.calls, n_single=args.single).items():
        rows[half] = diarisation_figures(work / half, truth, settings)
        print(f"{half}: {len(rows[half])} files diarised ({time.perf_counter() - started:.0f} s)")
    chosen = threshold(rows["fit"])
    shipped = settings.diarisation.min_separation
    demo_truth = demo_mono(work / "demo")
    demo_rows = {}
    from callsort.audio.diarise import diarisation_error

    for name, t in demo_truth.items():
        spk = speakers_of(work / "demo" / name, settings)
        two = speakers_of(
            work / "demo" / name,
            replace(settings, diarisation=replace(settings.diarisation, speakers=2)),
        )
        demo_rows[name] = {
            "separation": two.separation,
            "similarity": two.similarity,
            "n_speakers_auto": spk.n_speakers,
            "der_auto": diarisation_error(t["turns"], turns_of(spk.segments)),
            "der_two": diarisation_error(t["turns"], turns_of(two.segments)),
            "der_two_segments": diarisation_error(t["turns"], two.segments),
        }
    voicemail = speakers_of(SAMPLES / "voicemail_05_mono.flac", settings)
    results.update(
        threshold_chosen_on_fit=chosen,
        threshold_shipped=shipped,
        fit=summarise(rows["fit"], shipped),
        test=summarise(rows["test"], shipped),
        test_at_chosen_threshold=summarise(rows["test"], chosen),
        demo=demo_rows,
        demo_der_auto_mean=float(np.mean([r["der_auto"] for r in demo_rows.values()])),
        demo_der_two_mean=float(np.mean([r["der_two"] for r in demo_rows.values()])),
        voicemail_speakers_auto=voicemail.n_speakers,
        voicemail_separation=voicemail.separation,
        files={h: rows[h] for h in rows},
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    if not args.skip_labels:
        results["labels"] = label_runs(work, demo_truth, args.label_calls)
    results["wall_s"] = time.perf_counter() - started
    results["markdown"] = markdown(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "files"}, indent=1, default=float))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
