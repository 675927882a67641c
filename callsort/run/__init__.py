"""Running a batch, one module per job.

* ``analysis``: one recording, decode -> channels -> segment -> features -> model
* ``worker``: a process's loaded model, one recording's result or error row, the time limit
* ``pool``: this machine's worker processes and their fork server
* ``dask``: the same analysis as Dask tasks; ``engines`` picks one of the two
* ``batch``: :func:`~callsort.run.batch.label`, plan -> analyse -> tables, or, with an
  output folder, a ``dataset_run`` (lock, recover, plan, analyse, commit, summarise)
* ``options``: the run's typed options and outcome; ``names``: how recordings are named
* ``progress``: what the command prints
"""
