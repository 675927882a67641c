"""The dataset on disk, one module per job.

* ``manifest``: what the dataset knows of each recording; which recordings a run analyses
* ``store``: the partitioned tables and the manifest, committed in crash-safe batches
* ``lock``: one writing run per dataset; ``runlog``: JSON-lines events and run summaries
* ``tables``: result rows as Arrow tables; ``writers``: atomic, schema-true files
* ``reading``: the tables back as DataFrames; ``synthetic``: consistent tables without audio
* ``labels``: a centre's own labels file, checked and matched to segments
"""
