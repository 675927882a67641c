"""Fixtures shared by the training tests."""

from pathlib import Path

import pytest

from callsort.training.corpora import Clip


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    """Two speakers with eight clips of each emotion, as in RAVDESS."""
    return [
        Clip(path=Path(f"{s}-{e}-{i}.flac"), label=e, speaker=s)
        for s in ("01", "02")
        for e in ("angry", "calm", "happy", "sad")
        for i in range(8)
    ]
