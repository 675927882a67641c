#!/usr/bin/env bash
# Regenerate both shipped models, and the figures on their cards, from the two corpora
# beside the repository (../shared/datasets, or $CALLSORT_DATA):
#
#     bash scripts/train_shipped_models.sh
#
# default: hand-made features + Whisper base's embedding through a stacked linear head;
# fast: the hand-made features alone. Both learn from RAVDESS and nEMO; RAVDESS actors
# 23 and 24 are held out of the final fits (the demo calls in sample_recordings/ are theirs).
# Each card's metrics (RAVDESS's 6 folds, nEMO's 3 folds, leave-one-corpus-out, every
# telephone codec) are also written to benchmarks/results/accuracy-{shipped,fast}.json.
set -euo pipefail
data=${CALLSORT_DATA:-../shared/datasets}
corpora=("$data/ravdess-speech-16k" "$data/nemo-speech-16k")
callsort train "${corpora[@]}" --holdout-speakers 23,24 \
    --out callsort/models/default --json benchmarks/results/accuracy-shipped.json "$@"
callsort train "${corpora[@]}" --holdout-speakers 23,24 --fast \
    --out callsort/models/fast --json benchmarks/results/accuracy-fast.json "$@"
