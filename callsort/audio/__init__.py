"""Audio in: find recordings, decode them, split channels, find speech segments, tell the
two speakers of a mono channel apart; the filterbanks the analysis builds on."""
