"""Settings added after datasets and feature caches existed keep those valid at their old values."""

from dataclasses import replace

from callsort.dataset.manifest import fingerprint
from callsort.model.card import model_folder
from callsort.settings import (
    AnalysisSettings,
    ContextSettings,
    FeatureSettings,
    identity,
    settings_repr,
)

# the fields SegmentationSettings had before its constants became settings (issue 14)
SEGMENTATION_BEFORE = [
    "frame_s", "noise_floor_percentile", "start_db", "stay_db", "dynamic_range_db",
    "min_speech_s", "min_pause_s", "pad_s", "max_segment_s", "min_modulation_db",
]  # fmt: skip


def before_issue_17(settings: AnalysisSettings) -> AnalysisSettings:
    """``settings`` with the settings of issue 17 at the values that mean callsort before it."""
    segmentation = replace(
        settings.segmentation,
        short_utterance_s=None,
        short_utterance_zcr_percentiles=(25.0, 75.0),
    )
    return replace(settings, segmentation=segmentation, context=None)


def test_a_setting_at_its_old_value_leaves_the_identity_as_before():
    default = before_issue_17(AnalysisSettings())
    assert list(identity(default.segmentation)) == SEGMENTATION_BEFORE
    assert set(identity(default.channels)) == {"mode", "names"}
    assert "context" not in identity(default)
    assert "voicing_threshold" not in identity(FeatureSettings())
    assert settings_repr(default.segmentation).startswith("SegmentationSettings(frame_s=0.01, ")


def test_a_setting_away_from_its_old_value_changes_the_dataset_fingerprint():
    folder = model_folder("fast")
    default = AnalysisSettings()
    louder_floor = replace(default, segmentation=replace(default.segmentation, silence_db=-100.0))
    other_dc = replace(default, channels=replace(default.channels, dc_chunk=512))
    values = {fingerprint(folder, s).value for s in (default, louder_floor, other_dc)}
    assert len(values) == 3
    assert identity(louder_floor)["segmentation"]["silence_db"] == -100.0


def test_how_the_encoder_runs_is_part_of_its_models_fingerprint_and_cache_keys(
    tmp_path, monkeypatch
):
    """int8 and float32 encoders give other rows and features: a dataset or cache entry
    made with one is not taken for the other; the fast model (no encoder) keeps both."""
    from callsort.dataset import manifest
    from callsort.training import cache

    audio = tmp_path / "clip.wav"
    audio.write_bytes(b"RIFF")
    settings = AnalysisSettings()
    with_encoder = FeatureSettings(encoder="whisper-base")

    def seen() -> dict:
        return {
            "default": fingerprint(model_folder("default"), settings).value,
            "fast": fingerprint(model_folder("fast"), settings).value,
            "encoder key": cache._cache_key(audio, "clean", settings, with_encoder),
            "fast key": cache._cache_key(audio, "clean", settings, FeatureSettings()),
        }

    now = seen()
    monkeypatch.setattr(manifest, "ENCODER_COMPUTE_TYPE", "int8")
    monkeypatch.setattr(cache, "ENCODER_COMPUTE_TYPE", "int8")
    before = seen()
    assert now["fast"] == before["fast"] and now["fast key"] == before["fast key"]
    assert now["default"] != before["default"]
    assert now["encoder key"] != before["encoder key"]


def test_short_utterances_and_context_change_the_fingerprint_so_datasets_relabel_once():
    """Both change labels (issue 17), so a dataset labelled before them is relabelled;
    without them the fingerprint is the one callsort gave before."""
    folder = model_folder("fast")
    default = AnalysisSettings()
    assert identity(default.segmentation)["short_utterance_s"] == 0.15
    assert identity(default)["context"] == identity(ContextSettings())
    before = before_issue_17(default)
    other_stay = replace(default, context=replace(default.context, p_stay=0.5))
    quartiles = replace(
        default,
        segmentation=replace(default.segmentation, short_utterance_zcr_percentiles=(25.0, 75.0)),
    )
    assert "short_utterance_zcr_percentiles" not in identity(quartiles.segmentation)
    values = {fingerprint(folder, s).value for s in (default, before, other_stay, quartiles)}
    assert len(values) == 4


def test_encoder_depth_keys_the_cache_and_a_card_without_it_means_six_layers(tmp_path):
    """A feature cache made with all six encoder layers keeps its keys; four layers give
    other features and other keys. A card written before the depth was a setting is read
    as six layers, the depth its model was trained with."""
    from callsort.training import cache

    audio = tmp_path / "clip.wav"
    audio.write_bytes(b"RIFF")
    settings = AnalysisSettings()
    six = FeatureSettings(encoder="whisper-base")
    four = FeatureSettings(encoder="whisper-base", encoder_layers=4)
    assert "encoder_layers" not in identity(six)
    assert identity(four)["encoder_layers"] == 4
    assert cache._cache_key(audio, "clean", settings, six) != cache._cache_key(
        audio, "clean", settings, four
    )
    old_card = {k: v for k, v in six.to_dict().items() if k != "encoder_layers"}
    assert FeatureSettings(**old_card).encoder_layers == 6
