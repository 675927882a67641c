"""The dataset on disk: tables, schema-true writers, manifest, lock, run log, reading."""
