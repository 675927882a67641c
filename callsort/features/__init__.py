"""Per-segment features: hand-made spectral/prosodic ones, channel normalisation, the speech encoder."""
