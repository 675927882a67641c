"""The speaker encoder (callsort.audio.voices) on real audio: the demo call's two voices."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from callsort.audio.voices import WINDOW_FRAMES, voice_embeddings, voice_mel

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_recordings"
CALL = "call_01_escalation.wav"


def test_the_numpy_encoder_gives_what_pytorch_gave_on_the_same_input():
    """tests/data/ge2e_reference.npz holds PyTorch's nn.LSTM run of the same weights
    (scripts/make_speaker_encoder.py) on windows of the demo call and a short one."""
    with np.load(REPO / "tests" / "data" / "ge2e_reference.npz") as ref:
        for name in ("agent", "customer", "short"):
            ours = voice_embeddings(ref[f"{name}_mel"])
            np.testing.assert_allclose(ours, ref[f"{name}_embedding"], atol=2e-5)
            np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def _turn_windows(y: np.ndarray, turns: list[tuple[float, float]]) -> np.ndarray:
    """1.6 s windows every 0.8 s of each turn of ``y`` (16 kHz): their embeddings."""
    rows = []
    for start, end in turns:
        mel = voice_mel(y[round(start * 16_000) : round(end * 16_000)])
        for a in range(0, mel.shape[0] - WINDOW_FRAMES + 1, WINDOW_FRAMES // 2):
            rows.append(mel[a : a + WINDOW_FRAMES])
    return voice_embeddings(np.stack(rows))


def test_windows_of_one_voice_are_nearer_each_other_than_the_other_voice():
    """The agent's (left) and customer's (right) turns of the stereo demo call, as
    ground_truth.csv places them, through the 8 kHz mu-law file: each window's nearest
    speaker centroid (the other windows of the call) is its own speaker's."""
    y, sr = sf.read(SAMPLES / CALL, dtype="float32")
    y = soxr.resample(y, sr, 16_000)
    with (SAMPLES / "ground_truth.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["recording"] == CALL]
    sides = []
    for k, channel in enumerate(("left", "right")):
        turns = [(float(r["start_s"]), float(r["end_s"])) for r in rows if r["channel"] == channel]
        sides.append(_turn_windows(y[:, k], turns))
    E = np.concatenate(sides)
    who = np.repeat([0, 1], [len(s) for s in sides])
    right = 0
    for i in range(len(E)):
        others = np.arange(len(E)) != i
        centroids = [E[others & (who == k)].mean(axis=0) for k in (0, 1)]
        right += int(np.argmax([E[i] @ c for c in centroids]) == who[i])
    assert right / len(E) >= 0.95, f"{right} of {len(E)} windows nearest their own speaker"
    same = (sides[0] @ sides[0].T)[np.triu_indices(len(sides[0]), 1)].mean()
    other = (sides[0] @ sides[1].T).mean()
    assert same > other + 0.1


def test_a_quiet_stretch_is_raised_to_the_level_and_a_loud_one_left_alone():
    y, sr = sf.read(SAMPLES / CALL, dtype="float32")
    y = soxr.resample(y[: 4 * sr, 0], sr, 16_000)
    rms_db = 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    assert -30 < rms_db < -20  # the demo call's agent, a little above the -30 dBFS level
    loud = voice_mel(y * 2)  # louder than the level: power scales with the gain squared
    np.testing.assert_allclose(voice_mel(y * 4), loud * 4, rtol=1e-4, atol=1e-9)
    quiet = voice_mel(y * 0.01)  # -40 dB: raised to -30 dBFS, whatever it was
    np.testing.assert_allclose(quiet, voice_mel(y * 0.003), rtol=1e-3, atol=1e-9)
    target = 10 ** (-30 / 20) / 10 ** (rms_db / 20)
    np.testing.assert_allclose(quiet, voice_mel(y * target), rtol=1e-3, atol=1e-9)
