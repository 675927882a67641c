"""Build callsort/models/speakers/ge2e.npz, the speaker encoder of
:mod:`callsort.audio.voices`, from the Resemblyzer 0.1.4 wheel (Apache-2.0), and
tests/data/ge2e_reference.npz, what PyTorch's own LSTM makes of a few inputs, which the
tests hold callsort's numpy encoder to.

Needs PyTorch only here (callsort runs the encoder in numpy). From the repo root:

    pip download resemblyzer==0.1.4 --no-deps -d /tmp/resemblyzer
    pip install torch==2.13.0        # the CPU build (see the developers' guide)
    python scripts/make_speaker_encoder.py /tmp/resemblyzer/Resemblyzer-0.1.4-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from callsort.audio.voices import WEIGHTS, voice_mel  # noqa: E402

REFERENCE = REPO_ROOT / "tests" / "data" / "ge2e_reference.npz"
MEMBER = "resemblyzer/pretrained.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="Resemblyzer-0.1.4-py3-none-any.whl")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    args = parser.parse_args()
    import torch

    raw = zipfile.ZipFile(args.wheel).read(MEMBER)
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)["model_state"]
    w = {k: v.numpy().astype(np.float32) for k, v in state.items()}
    weights = {"linear_w": w["linear.weight"], "linear_b": w["linear.bias"]}
    for layer in range(3):
        weights[f"w_ih_{layer}"] = w[f"lstm.weight_ih_l{layer}"]
        weights[f"w_hh_{layer}"] = w[f"lstm.weight_hh_l{layer}"]
        weights[f"b_{layer}"] = w[f"lstm.bias_ih_l{layer}"] + w[f"lstm.bias_hh_l{layer}"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **weights)

    # PyTorch's reference: windows of both voices of a demo call, and a short one
    lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
    linear = torch.nn.Linear(256, 256)
    lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
    linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
    y, sr = sf.read(REPO_ROOT / "sample_recordings" / "call_01_escalation.wav", dtype="float32")
    import soxr

    y = soxr.resample(y, sr, 16_000)
    inputs = {  # turns of ground_truth.csv: the agent 0.5-3.2 s, the customer 3.8-5.9 s
        "agent": voice_mel(y[8_000:51_000, 0])[None, 40:200],
        "customer": voice_mel(y[60_000:94_600, 1])[None, 10:170],
        "short": voice_mel(y[8_000:24_000, 0])[None, 20:60],
    }
    reference = {}
    with torch.no_grad():
        for name, mel in inputs.items():
            _, (hidden, _) = lstm(torch.from_numpy(mel))
            e = torch.relu(linear(hidden[-1]))
            reference[f"{name}_mel"] = mel
            reference[f"{name}_embedding"] = (e / torch.norm(e, dim=1, keepdim=True)).numpy()
    np.savez_compressed(args.reference, **reference)
    print(
        json.dumps(
            {
                "wheel_sha256": hashlib.sha256(args.wheel.read_bytes()).hexdigest(),
                "pretrained_pt_sha256": hashlib.sha256(raw).hexdigest(),
                "weights": str(args.out.relative_to(REPO_ROOT)),
                "parameters": int(sum(v.size for v in weights.values())),
                "torch": torch.__version__,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
