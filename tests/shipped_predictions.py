"""Probabilities of the shipped models on a fixed synthetic recording.

``tests/model/test_model_shipped.py`` compares today's probabilities with those stored in
``tests/data/shipped_predictions.json``. The fast model's were computed when it was
rebuilt at 8 kHz over 20 ms hops (0.1.0+1cbe5d3e, issue 20), the default model's when its
encoder moved to float32 (issue 18); regenerate
them (``python tests/shipped_predictions.py``) only for a deliberate change of a shipped
model or of the features.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from conftest import speech_like, white_noise  # noqa: E402
from readme_examples import MACHINE_TOLERANCE  # noqa: E402, F401  (the promise across machines)

FIXTURE = Path(__file__).parent / "data" / "shipped_predictions.json"
SHIPPED = ("default", "fast")


def recording() -> np.ndarray:
    """Eight seconds at 16 kHz: three voices of different pitch and pace, with pauses, in noise."""
    parts = [
        np.zeros(8000, np.float32),
        speech_like(2.0, f0_range_hz=(90.0, 160.0), syllable_hz=3.5, rms=0.05, seed=1),
        np.zeros(12000, np.float32),
        speech_like(2.5, f0_range_hz=(180.0, 320.0), syllable_hz=5.0, rms=0.2, seed=2),
        np.zeros(8000, np.float32),
        speech_like(1.5, f0_range_hz=(120.0, 200.0), syllable_hz=4.0, rms=0.1, seed=3),
        np.zeros(8000, np.float32),
    ]
    y = np.concatenate(parts)
    return (y + white_noise(y.size / 16000, rms=2e-3, seed=4)[: y.size]).astype(np.float32)


def predictions(name: str) -> dict:
    """Segments and probabilities of the shipped model ``name`` on :func:`recording`."""
    from callsort.audio.segment import frame_measures, speech_segments
    from callsort.features.spectral import feature_names, segment_features
    from callsort.model.folder import load_model

    model = load_model(name)
    y = recording()
    seg = model.segmentation_settings
    energy, zcr = frame_measures(y, frame_length=round(seg.frame_s * 16000))
    segments = speech_segments(energy, zcr, settings=seg)
    settings = model.feature_settings
    model.check_feature_layout(feature_names(settings))
    X = np.stack(
        [
            segment_features(y[round(a * 16000) : round(b * 16000)], settings=settings)
            for a, b in segments
        ]
    )
    return {
        "segments": [[a, b] for a, b in segments],
        "classes": model.classes,
        "proba": model.channel_proba(X).tolist(),
    }


if __name__ == "__main__":
    FIXTURE.write_text(
        json.dumps({name: predictions(name) for name in SHIPPED}, indent=1) + "\n",
        encoding="utf-8",
    )
    print(FIXTURE.read_text()[:2000])
