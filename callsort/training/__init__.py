"""Training and evaluation: corpora, augmentation, the feature cache, the protocol,
archive standardisation, tuning, metrics, and ``callsort train`` itself (train.py)."""
