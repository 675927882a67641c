"""The Dask engine gives the same dataset as the local one (needs the dask extra)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from callsort.run.batch import label
from callsort.run.dask import restore_environ

distributed = pytest.importorskip("distributed", reason="the Dask engine needs callsort[dask]")

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_recordings"
RUN_SPECIFIC = ["processing_s", "processed_at"]  # wall time and clock: differ between runs


@pytest.fixture(autouse=True)
def _environment_given_back():
    """The clusters these tests start leave their nannies' variables (OPENBLAS_NUM_THREADS=1,
    PYTHONHASHSEED...) in this process's environment: give it back, so that later tests'
    subprocesses do not inherit them (training's feature workers once did)."""
    saved = dict(os.environ)
    yield
    restore_environ(saved)


def _table(out: Path, name: str) -> pd.DataFrame:
    table = ds.dataset(out / name, format="parquet", partitioning="hive").to_table().to_pandas()
    keys = ["recording", "channel"] + (["segment_index"] if name == "segments" else [])
    table["date"] = table["date"].astype(str)
    drop = [c for c in RUN_SPECIFIC if c in table.columns]
    return table.drop(columns=drop).sort_values(keys).reset_index(drop=True)


def _model_loaded() -> bool:
    from callsort.run import worker

    return worker.model_loaded()


def test_dask_cluster_run_equals_local_run_row_for_row(tmp_path):
    archive = tmp_path / "archive"
    shutil.copytree(SAMPLES, archive)
    (archive / "sub").mkdir()
    shutil.copy(SAMPLES / "voicemail_05_mono.flac", archive / "sub" / "again.flac")
    (archive / "broken.wav").write_bytes(b"RIFF but not audio")

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        on_dask = label(
            [archive],
            out=tmp_path / "dask",
            engine="dask",
            scheduler=cluster.scheduler_address,
            batch_size=3,
        )
        workers = cluster.scheduler_info["workers"]
        assert len(workers) == 2
        with distributed.Client(cluster) as client:  # both worker processes did work
            loaded = client.run(_model_loaded)
        assert sorted(loaded.values()) == [True, True], loaded
    local = label([archive], out=tmp_path / "local", jobs=1)

    assert on_dask.n_ok == local.n_ok == 7
    assert on_dask.n_failed == local.n_failed == 1
    for name in ("segments", "calls"):
        got, want = _table(tmp_path / "dask", name), _table(tmp_path / "local", name)
        assert len(got) > 0
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    # the manifests agree on everything but where and when
    columns = ["recording", "size_bytes", "mtime_ns", "fingerprint", "status", "error", "date"]
    columns += ["duration_s", "n_segments", "model_version"]
    manifests = [
        pq.read_table(tmp_path / o / "manifest.parquet").to_pandas()[columns]
        for o in ("dask", "local")
    ]
    pd.testing.assert_frame_equal(*manifests)
    # and the dataset is as incremental as a local one: a local rerun finds nothing to do
    assert label([archive], out=tmp_path / "dask", jobs=1).planned == ()


def test_dask_workers_with_another_model_abort_the_run_and_write_no_rows(tmp_path, monkeypatch):
    """The client's model checksum differs from the workers': as a local worker that cannot
    load its model, the run stops with a model error and commits nothing."""
    from dataclasses import replace

    from callsort.dataset import manifest as dataset
    from callsort.errors import ModelError

    real = dataset.fingerprint

    def client_with_another_model(model_dir, settings):
        return replace(real(model_dir, settings), model_sha256="0" * 64)

    monkeypatch.setattr(dataset, "fingerprint", client_with_another_model)
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("voicemail_05_mono.flac", "call_04_calm.wav"):
        shutil.copy(SAMPLES / name, archive / name)
    out = tmp_path / "dataset"
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        pytest.raises(ModelError, match="differs from the client's"),
    ):
        label([archive], out=out, engine="dask", scheduler=cluster.scheduler_address)
    assert not (out / "manifest.parquet").exists()
    assert not list(out.rglob("*.parquet"))
    (summary,) = (out / "runs").glob("*.json")
    assert '"exit_code": 2' in summary.read_text()
