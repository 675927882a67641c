"""Running a batch: one recording's analysis, worker processes, engines, progress."""
