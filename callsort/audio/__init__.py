"""Audio in: find recordings, decode them, split channels, find speech segments."""
