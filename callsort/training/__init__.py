"""Training and evaluation: corpora, augmentation, the protocol, metrics."""
