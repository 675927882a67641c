"""Write ``callsort/models/encoder/reference.npy``: the pip wheels' embeddings of the reference
signal, one row per encoder depth (row i: the encoder cut after i + 1 layers).

    python scripts/make_encoder_reference.py

callsort accepts an encoder folder of one's own (``--encoder-dir``) only if it turns
:func:`callsort.features.encoder.reference_signal` into this embedding, and
``tests/features/test_encoder.py`` checks that the pip wheels still give it on the
machine running the tests. Rerun it only for a deliberate change of how the encoder
is computed (its compute type, the log-mel, the pooling), and say so in the commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "callsort" / "models" / "encoder" / "reference.npy"


def main() -> int:
    from callsort.features.encoder import ENCODER_LAYERS, Encoder, reference_signal

    signal = reference_signal()
    by_depth = np.stack(
        [Encoder(layers=n).embed([signal])[0] for n in range(1, ENCODER_LAYERS + 1)]
    )
    previous = np.load(REFERENCE) if REFERENCE.is_file() else None
    np.save(REFERENCE, by_depth)
    print(f"wrote {REFERENCE.relative_to(REPO)}: {by_depth.shape[0]} depths x {by_depth.shape[1]}")
    if previous is not None and previous.shape == by_depth.shape:
        for depth, (row, embedding) in enumerate(zip(previous, by_depth, strict=True), start=1):
            moved = np.linalg.norm(embedding - row) / np.linalg.norm(row)
            print(f"{depth} layers: the previous reference was {moved:.2e} of its norm away")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
