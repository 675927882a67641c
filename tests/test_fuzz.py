"""Fuzzing the decode and analysis layer with hypothesis: random and mutated audio files.

Whatever the bytes, :func:`callsort.run.analysis.analyse_recording` either returns
an analysis with finite probabilities or raises a :class:`CallsortError`;
nothing else escapes and nothing hangs (each example runs under an alarm,
and a process-wide watchdog ends a native hang).

The examples are derandomised, so CI runs the same ones every time. For a
longer, random run: ``CALLSORT_FUZZ_EXAMPLES=5000 CALLSORT_FUZZ_RANDOM=1
python -m pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import faulthandler
import io
import os
import signal
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import bursts_in_noise
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callsort.errors import CallsortError
from callsort.model.folder import load_model
from callsort.run.analysis import analyse_recording
from callsort.settings import AnalysisSettings

EXAMPLES = int(os.environ.get("CALLSORT_FUZZ_EXAMPLES", "400"))
PER_EXAMPLE_S = 20  # an example slower than this counts as a hang
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CALLSORT_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MODEL = load_model()
SETTINGS = AnalysisSettings()
RAN = {"examples": 0, "ok": 0, "error": 0}


def _seed_files() -> dict[str, bytes]:
    """Valid files to mutate: 0.6 s of speech-like sound in each container and codec."""
    y = bursts_in_noise([(0.1, 0.5)], 0.6, sr=8000)
    stereo = np.stack([y, y[::-1]], axis=1)
    seeds = {}
    for key, data, fmt, subtype in [
        ("wav16", y, "WAV", "PCM_16"),
        ("wav_float_stereo", stereo, "WAV", "FLOAT"),
        ("wav_ulaw", y, "WAV", "ULAW"),
        ("flac", y, "FLAC", "PCM_16"),
        ("ogg", y, "OGG", "VORBIS"),
        ("mp3", y, "MP3", "MPEG_LAYER_III"),
        ("aiff", stereo, "AIFF", "PCM_24"),
        ("au", y, "AU", "PCM_16"),
    ]:
        buffer = io.BytesIO()
        sf.write(buffer, data, 8000, format=fmt, subtype=subtype)
        seeds[key] = buffer.getvalue()
    return seeds


SEEDS = _seed_files()
MAGIC = [b"", b"RIFF\xff\xff\xff\xffWAVEfmt ", b"fLaC", b"OggS", b"ID3\x03", b"FORM", b".snd"]
INTERESTING = [0, 1, 2, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


class Hang(BaseException):
    """Raised by the time limit; a BaseException, so no ``except Exception`` in a library
    between the alarm and this test can swallow it and let a hang pass."""


def test_a_hang_is_not_swallowed_by_a_library_catching_exception():
    def library_call():
        try:
            raise Hang("the alarm went off in here")
        except Exception:
            return "carried on"

    with pytest.raises(Hang):
        library_call()


@pytest.fixture(scope="module", autouse=True)
def watchdog():
    """Ends the whole process, with every thread's stack, if a native call hangs."""
    faulthandler.dump_traceback_later(PER_EXAMPLE_S * (EXAMPLES + 10), exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    print(f"\nfuzz: {RAN}", file=sys.stderr)


def analyse_bytes(data: bytes, suffix: str) -> None:
    """Analyse ``data`` as a file; only CallsortError may escape, within the time limit."""

    def alarm(signum, frame):
        raise Hang(f"analysis of a {len(data)}-byte file took over {PER_EXAMPLE_S} s")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        previous = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, PER_EXAMPLE_S)
        RAN["examples"] += 1
        try:
            analysis = analyse_recording(path, model=MODEL, settings=SETTINGS)
        except CallsortError as exc:
            RAN["error"] += 1
            assert str(exc).strip(), "a CallsortError must say what is wrong"
            assert folder not in str(exc), "reasons do not carry the path"
            return
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    RAN["ok"] += 1
    assert analysis.duration_s >= 0 and np.isfinite(analysis.duration_s)
    for channel in analysis.channels:
        assert np.isfinite(channel.probabilities).all()
        assert len(channel.segments) == len(channel.probabilities)
        if len(channel.probabilities):
            np.testing.assert_allclose(channel.probabilities.sum(axis=1), 1.0, atol=1e-6)


@st.composite
def mutated(draw) -> tuple[bytes, str]:
    """A valid file with bytes flipped, 32-bit header fields set to edge values, cut or grown."""
    key = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[key])
    header = min(len(data), 256)
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, header - 1) | st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, header - 4))
        value = draw(st.sampled_from(INTERESTING) | st.integers(0, 2**32 - 1))
        data[position : position + 4] = struct.pack(draw(st.sampled_from("<>")) + "I", value)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(max_size=64))
    suffix = draw(st.sampled_from([".wav", ".flac", ".ogg", ".mp3", ".aiff", ".au", ".bin"]))
    return bytes(data), suffix


@FUZZ
@given(mutated())
def test_mutated_audio_files(case):
    data, suffix = case
    analyse_bytes(data, suffix)


@FUZZ
@given(st.sampled_from(MAGIC), st.binary(max_size=4096), st.sampled_from([".wav", ".mp3", ""]))
def test_random_bytes(magic, body, suffix):
    analyse_bytes(magic + body, suffix)
