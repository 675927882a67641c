"""Write ``callsort/models/encoder/reference.npy``: the pip wheels' embedding of the reference signal.

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
    from callsort.features.encoder import Encoder, reference_signal

    embedding = Encoder().embed([reference_signal()])[0]
    previous = np.load(REFERENCE) if REFERENCE.is_file() else None
    np.save(REFERENCE, embedding)
    print(f"wrote {REFERENCE.relative_to(REPO)}: {embedding.shape[0]} values")
    if previous is not None and previous.shape == embedding.shape:
        moved = np.linalg.norm(embedding - previous) / np.linalg.norm(previous)
        print(f"the previous reference was {moved:.4f} of its norm away")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
