"""Build the demo recordings in ``sample_recordings/`` from RAVDESS actors 23 and 24.

The script assembles four stereo "telephone calls" and one mono voicemail out of
RAVDESS speech clips (actors 23 and 24 only, who are held out of callsort's
shipped model), and writes a ground-truth table with one row per turn:

* ``call_01_escalation.wav`` ... ``call_04_calm.wav``: 8 kHz stereo mu-law WAV,
  LEFT channel = agent, RIGHT channel = customer. Turns alternate (only one
  party speaks at a time) with seeded 0.5-1.5 s pauses. Each channel is
  band-limited to 300-3400 Hz and carries its own low background noise, so the
  idle channel is never digital silence.
* ``voicemail_05_mono.flac``: 16 kHz mono 16-bit FLAC, one speaker.
* ``call_06_mono.wav``: ``call_01_escalation.wav`` summed to one channel (8 kHz mono
  mu-law, as an older recorder keeps a call). Its turns are those of call_01 (left: the
  agent, who speaks first; right: the customer); they are not in ``ground_truth.csv``,
  whose channels must be those ``callsort label`` gives by default, and that keeps this
  call whole (``--speakers auto``: README, Mono calls).
* ``ground_truth.csv``: ``recording,channel,start_s,end_s,emotion``.

Everything is seeded, so rerunning gives byte-identical files. From the repo
root:

    python scripts/make_sample_recordings.py
    python scripts/make_sample_recordings.py --corpus PATH --out DIR

The corpus is the 16 kHz mono FLAC copy of RAVDESS speech
(``Actor_NN/03-01-EE-II-SS-RR-AA.flac``). RAVDESS is licensed CC BY-NC-SA 4.0
(Livingstone & Russo 2018, https://doi.org/10.1371/journal.pone.0196391), and
so are the recordings this script derives from it.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr
from scipy import signal

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT / ".." / "shared" / "datasets" / "ravdess-speech-16k"
DEFAULT_OUT = REPO_ROOT / "sample_recordings"

SEED = 2018  # base seed; each recording gets its own stream derived from it
ACTORS = (23, 24)  # the only actors used; callsort's model is trained without them

# RAVDESS emotion codes we use, and the callsort label each one maps to.
EMOTION_CODES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry"}
LABELS = {"neutral": "calm", "calm": "calm", "happy": "happy", "sad": "sad", "angry": "angry"}

TELEPHONE_SR = 8000  # Hz
VOICEMAIL_SR = 16000  # Hz
TELEPHONE_BAND_HZ = (300.0, 3400.0)
BANDPASS_ORDER = 4  # Butterworth order (doubled in effect by zero-phase filtering)

TRIM_TOP_DB = 35.0  # librosa.effects.trim threshold below the clip's peak, dB
FADE_S = 0.010  # raised-cosine fade at both ends of every turn, seconds
LEAD_IN_S = 0.5  # silence before the first turn, seconds
TAIL_S = 0.6  # silence after the last turn, seconds
PAUSE_RANGE_S = (0.5, 1.5)  # gap between turns, seconds (uniform, seeded)

# Telephone AGC: every turn's RMS level is pulled towards TURN_LEVEL_DBFS, keeping
# only LEVEL_SPREAD_KEPT of its natural deviation. Angry turns stay louder than calm
# ones, but very quiet calm takes remain well above the line noise.
TURN_LEVEL_DBFS = -26.0
LEVEL_SPREAD_KEPT = 0.3

PEAK_DBFS = -3.0  # final peak level of every recording
LINE_NOISE_DBFS_RANGE = (-55.0, -50.0)  # per-channel RMS of the call background noise
VOICEMAIL_NOISE_DBFS = -60.0  # RMS of the (light, broadband) voicemail noise


@dataclass(frozen=True)
class Clip:
    """One RAVDESS speech clip, described by its file name fields."""

    path: Path
    actor: int
    emotion: str  # RAVDESS emotion name, e.g. "calm"
    intensity: int  # 1 = normal, 2 = strong
    statement: int
    repetition: int


@dataclass(frozen=True)
class Mood:
    """What a turn should sound like: a RAVDESS emotion, optionally a fixed intensity."""

    emotion: str
    intensity: int | None = None  # None = either intensity


@dataclass(frozen=True)
class CallSpec:
    """A two-party call: the agent opens, then agent and customer alternate."""

    name: str
    agent_actor: int
    customer_actor: int
    customer_moods: tuple[Mood, ...]  # one entry per customer turn, in order
    agent_mood: Mood = Mood("calm")


@dataclass(frozen=True)
class Turn:
    """A placed turn: audio samples at the output rate plus where they go."""

    channel: int  # column in the output array
    start: int  # first sample in the output recording
    audio: np.ndarray  # mono float64 samples at the output rate
    label: str  # callsort emotion label


CALM, HAPPY, SAD = Mood("calm"), Mood("happy"), Mood("sad")
ANGRY_STRONG = Mood("angry", intensity=2)

CALLS = (
    CallSpec(
        "call_01_escalation.wav",
        agent_actor=23,
        customer_actor=24,
        customer_moods=(CALM,) * 3 + (ANGRY_STRONG,) * 4,
    ),
    CallSpec("call_02_sad.wav", agent_actor=24, customer_actor=23, customer_moods=(SAD,) * 7),
    CallSpec("call_03_happy.wav", agent_actor=23, customer_actor=24, customer_moods=(HAPPY,) * 7),
    CallSpec("call_04_calm.wav", agent_actor=24, customer_actor=23, customer_moods=(CALM,) * 7),
)
CALL_CHANNELS = ("left", "right")  # left = agent, right = customer
AGENT, CUSTOMER = 0, 1

VOICEMAIL_NAME = "voicemail_05_mono.flac"
MONO_CALL_NAME = "call_06_mono.wav"  # the mono sum of CALLS[0]
VOICEMAIL_ACTOR = 24
VOICEMAIL_MOODS = (SAD,) * 7


def load_corpus(corpus: Path) -> list[Clip]:
    """Index the RAVDESS speech clips of ACTORS whose emotion we use."""
    clips = []
    for actor in ACTORS:
        folder = corpus / f"Actor_{actor:02d}"
        for path in sorted(folder.glob("03-01-*.flac")):
            _, _, emo, intensity, statement, repetition, file_actor = path.stem.split("-")
            if emo not in EMOTION_CODES:
                continue
            if int(file_actor) != actor:
                raise ValueError(f"{path.name} is in {folder.name} but names actor {file_actor}")
            clips.append(
                Clip(
                    path, actor, EMOTION_CODES[emo], int(intensity), int(statement), int(repetition)
                )
            )
        if not any(c.actor == actor for c in clips):
            raise SystemExit(f"no RAVDESS clips found in {folder}; is --corpus right?")
    return clips


def pick_clips(
    clips: list[Clip], actor: int, moods: tuple[Mood, ...], rng: np.random.Generator
) -> list[Clip]:
    """Choose one clip per mood for one actor, avoiding repeats within the list.

    A clip is only reused once every matching clip has been used.
    """
    used: set[Path] = set()
    chosen = []
    for mood in moods:
        pool = [
            c
            for c in clips
            if c.actor == actor
            and c.emotion == mood.emotion
            and mood.intensity in (None, c.intensity)
        ]
        if not pool:
            raise SystemExit(f"no clips for actor {actor}, {mood}")
        fresh = [c for c in pool if c.path not in used] or pool
        clip = fresh[rng.integers(len(fresh))]
        used.add(clip.path)
        chosen.append(clip)
    return chosen


def db_to_gain(db: float) -> float:
    """Convert a level in dB to a linear amplitude factor."""
    return float(10.0 ** (db / 20.0))


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of a signal in dBFS (full scale = 1.0)."""
    return float(20.0 * np.log10(np.sqrt(np.mean(np.square(x))) + 1e-12))


def render_turn(clip: Clip, out_sr: int) -> np.ndarray:
    """Load a clip, trim its silences, level it and resample it to ``out_sr`` Hz.

    Returns mono float64 samples at ``out_sr`` Hz with FADE_S-second fades.
    """
    audio, sr = sf.read(clip.path, dtype="float64", always_2d=False)
    if audio.ndim != 1:
        raise ValueError(f"{clip.path.name}: expected mono audio")
    speech, _ = librosa.effects.trim(audio, top_db=TRIM_TOP_DB)

    level = rms_dbfs(speech)
    target = TURN_LEVEL_DBFS + LEVEL_SPREAD_KEPT * (level - TURN_LEVEL_DBFS)
    speech = speech * db_to_gain(target - level)

    if sr != out_sr:
        speech = soxr.resample(speech, sr, out_sr, quality="HQ")

    n_fade = round(FADE_S * out_sr)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n_fade))
    speech = speech.copy()
    speech[:n_fade] *= ramp
    speech[-n_fade:] *= ramp[::-1]
    return speech


def place_turns(
    segments: list[tuple[int, np.ndarray, str]], sr: int, rng: np.random.Generator
) -> tuple[list[Turn], int]:
    """Lay turns end to end with seeded pauses; return the turns and total length.

    ``segments`` holds (channel, audio at ``sr`` Hz, label) in speaking order. The
    first turn starts after LEAD_IN_S seconds, pauses are PAUSE_RANGE_S seconds and
    the recording ends TAIL_S seconds after the last turn.
    """
    turns = []
    cursor = round(LEAD_IN_S * sr)
    for i, (channel, audio, label) in enumerate(segments):
        if i > 0:
            cursor += round(rng.uniform(*PAUSE_RANGE_S) * sr)
        turns.append(Turn(channel, cursor, audio, label))
        cursor += len(audio)
    return turns, cursor + round(TAIL_S * sr)


def mix(turns: list[Turn], n_samples: int, n_channels: int) -> np.ndarray:
    """Write the turns into a silent (n_samples, n_channels) array."""
    out = np.zeros((n_samples, n_channels))
    for turn in turns:
        out[turn.start : turn.start + len(turn.audio), turn.channel] += turn.audio
    return out


def bandpass(x: np.ndarray, sr: int, band_hz: tuple[float, float]) -> np.ndarray:
    """Zero-phase Butterworth band-pass of every column of ``x``; band edges in Hz."""
    sos = signal.butter(BANDPASS_ORDER, band_hz, btype="bandpass", fs=sr, output="sos")
    return signal.sosfiltfilt(sos, x, axis=0)


def add_noise_and_normalise(
    speech: np.ndarray,
    noise_dbfs: list[float],
    rng: np.random.Generator,
    sr: int,
    band_hz: tuple[float, float] | None = None,
) -> np.ndarray:
    """Scale speech to PEAK_DBFS, add steady Gaussian noise per channel, renormalise.

    ``noise_dbfs`` gives each channel's noise RMS in dBFS; with ``band_hz`` (Hz) the
    noise is band-limited like the speech. The result peaks at PEAK_DBFS, so the
    noise ends up within a small fraction of a dB of its requested level.
    """
    speech = speech * (db_to_gain(PEAK_DBFS) / np.max(np.abs(speech)))
    noise = rng.standard_normal(speech.shape)
    if band_hz is not None:
        noise = bandpass(noise, sr, band_hz)
    for ch, level in enumerate(noise_dbfs):
        noise[:, ch] *= db_to_gain(level - rms_dbfs(noise[:, ch]))
    out = speech + noise
    return out * (db_to_gain(PEAK_DBFS) / np.max(np.abs(out)))


def ground_truth_rows(name: str, turns: list[Turn], sr: int, channels: tuple[str, ...]):
    """One ground-truth row per turn; times in seconds within the output file."""
    for turn in turns:
        yield {
            "recording": name,
            "channel": channels[turn.channel],
            "start_s": f"{turn.start / sr:.3f}",
            "end_s": f"{(turn.start + len(turn.audio)) / sr:.3f}",
            "emotion": turn.label,
        }


def build_call(spec: CallSpec, clips: list[Clip], rng: np.random.Generator, out: Path):
    """Render one stereo 8 kHz mu-law call to ``out / spec.name``; return its turns."""
    n = len(spec.customer_moods)
    agent_clips = pick_clips(clips, spec.agent_actor, (spec.agent_mood,) * n, rng)
    customer_clips = pick_clips(clips, spec.customer_actor, spec.customer_moods, rng)

    segments = []
    for agent_clip, customer_clip in zip(agent_clips, customer_clips, strict=True):
        for channel, clip in ((AGENT, agent_clip), (CUSTOMER, customer_clip)):
            segments.append((channel, render_turn(clip, TELEPHONE_SR), LABELS[clip.emotion]))
    turns, n_samples = place_turns(segments, TELEPHONE_SR, rng)

    speech = bandpass(mix(turns, n_samples, 2), TELEPHONE_SR, TELEPHONE_BAND_HZ)
    noise_dbfs = [float(rng.uniform(*LINE_NOISE_DBFS_RANGE)) for _ in CALL_CHANNELS]
    audio = add_noise_and_normalise(speech, noise_dbfs, rng, TELEPHONE_SR, TELEPHONE_BAND_HZ)
    sf.write(out / spec.name, audio, TELEPHONE_SR, format="WAV", subtype="ULAW")
    return turns


def build_voicemail(clips: list[Clip], rng: np.random.Generator, out: Path):
    """Render the mono 16 kHz 16-bit FLAC voicemail; return its turns."""
    chosen = pick_clips(clips, VOICEMAIL_ACTOR, VOICEMAIL_MOODS, rng)
    segments = [(0, render_turn(c, VOICEMAIL_SR), LABELS[c.emotion]) for c in chosen]
    turns, n_samples = place_turns(segments, VOICEMAIL_SR, rng)

    audio = add_noise_and_normalise(
        mix(turns, n_samples, 1), [VOICEMAIL_NOISE_DBFS], rng, VOICEMAIL_SR
    )
    sf.write(out / VOICEMAIL_NAME, audio[:, 0], VOICEMAIL_SR, format="FLAC", subtype="PCM_16")
    return turns


def build_mono_call(out: Path) -> None:
    """Write ``MONO_CALL_NAME``: the two channels of the first call, as written, averaged
    into one 8 kHz mu-law channel."""
    stereo, sr = sf.read(out / CALLS[0].name, dtype="float64")
    sf.write(out / MONO_CALL_NAME, stereo.mean(axis=1), sr, format="WAV", subtype="ULAW")


def main(argv: list[str] | None = None) -> None:
    """Build every sample recording and the ground-truth CSV."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help="RAVDESS speech 16 kHz corpus (default: ../shared/datasets/ravdess-speech-16k "
        "next to the repo)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output folder (default: sample_recordings/ in the repo)",
    )
    args = parser.parse_args(argv)

    clips = load_corpus(args.corpus)
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    for index, spec in enumerate(CALLS, start=1):
        rng = np.random.default_rng([SEED, index])
        turns = build_call(spec, clips, rng, args.out)
        rows += ground_truth_rows(spec.name, turns, TELEPHONE_SR, CALL_CHANNELS)
        print(f"wrote {spec.name}: {len(turns)} turns")

    rng = np.random.default_rng([SEED, len(CALLS) + 1])
    turns = build_voicemail(clips, rng, args.out)
    rows += ground_truth_rows(VOICEMAIL_NAME, turns, VOICEMAIL_SR, ("mono",))
    print(f"wrote {VOICEMAIL_NAME}: {len(turns)} turns")

    build_mono_call(args.out)
    print(f"wrote {MONO_CALL_NAME}: the mono sum of {CALLS[0].name}")

    with open(args.out / "ground_truth.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f,
            fieldnames=["recording", "channel", "start_s", "end_s", "emotion"],
            lineterminator="\n",
        )
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote ground_truth.csv: {len(rows)} rows")


if __name__ == "__main__":
    main()
