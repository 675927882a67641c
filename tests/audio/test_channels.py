"""How a file's channels become analysis channels (names and samples)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from callsort.audio.channels import analysis_channels, channel_names
from callsort.settings import ChannelSettings

SPLIT = ChannelSettings(mode="split")
MIX = ChannelSettings(mode="mix")


def numbered_block(n_frames: int, n_channels: int) -> np.ndarray:
    """``(frames, channels)`` float32 where channel c holds c + frame/1000 (easy to trace)."""
    frames = np.arange(n_frames, dtype=np.float32)[:, None] / 1000
    return (frames + np.arange(n_channels, dtype=np.float32)[None, :]).astype(np.float32)


@pytest.mark.parametrize("settings", [SPLIT, MIX], ids=["split", "mix"])
def test_mono_is_named_mono_in_either_mode(settings):
    assert channel_names(1, settings) == ["mono"]


def test_stereo_split_uses_the_configured_names():
    assert channel_names(2, SPLIT) == ["left", "right"]
    assert channel_names(2, ChannelSettings(names=("agent", "customer"))) == ["agent", "customer"]


@pytest.mark.parametrize("n_channels", [2, 6])
def test_mix_gives_one_channel_named_mix(n_channels):
    assert channel_names(n_channels, MIX) == ["mix"]


def test_six_channels_split_are_named_by_index():
    assert channel_names(6, SPLIT) == ["ch0", "ch1", "ch2", "ch3", "ch4", "ch5"]


@pytest.mark.parametrize("n_channels", [1, 2, 6])
@pytest.mark.parametrize("settings", [SPLIT, MIX], ids=["split", "mix"])
def test_analysis_channels_match_channel_names(n_channels, settings):
    block = numbered_block(50, n_channels)
    out = analysis_channels(block, settings)
    assert out.shape == (len(channel_names(n_channels, settings)), 50)
    assert out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]


def test_split_transposes_without_changing_samples():
    block = numbered_block(40, 6)
    out = analysis_channels(block, SPLIT)
    np.testing.assert_array_equal(out, block.T)
    np.testing.assert_array_equal(out[3], block[:, 3])


def test_mix_is_the_mean_of_the_channels():
    left = np.array([1.0, 0.5, -1.0, 0.0], np.float32)
    right = np.array([-1.0, 0.5, 0.0, 0.25], np.float32)
    out = analysis_channels(np.stack([left, right], axis=1), MIX)
    np.testing.assert_allclose(out, [[0.0, 0.5, -0.5, 0.125]])


def test_mix_of_opposite_channels_cancels():
    x = np.sin(np.linspace(0, 20, 200)).astype(np.float32)
    out = analysis_channels(np.stack([x, -x], axis=1), MIX)
    np.testing.assert_allclose(out, 0.0, atol=1e-7)


def test_mix_of_six_channels():
    block = numbered_block(30, 6)
    out = analysis_channels(block, MIX)
    np.testing.assert_allclose(out[0], block.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(out[0, 0], (0 + 1 + 2 + 3 + 4 + 5) / 6)


def test_mono_in_mix_mode_is_passed_through():
    block = numbered_block(20, 1)
    np.testing.assert_array_equal(analysis_channels(block, MIX), block.T)


# DC offset ----------------------------------------------------------------------------------


def test_a_dc_offset_is_taken_out_of_each_channel_on_its_own(make_speech):
    speech = make_speech(2.0, seed=1)
    block = np.stack([speech + 0.3, speech - 0.05, speech], axis=1).astype(np.float32)
    out = analysis_channels(block, SPLIT)
    np.testing.assert_allclose(out[0], speech, atol=2e-3)
    np.testing.assert_allclose(out[1], speech, atol=2e-3)
    np.testing.assert_array_equal(out[2], speech)  # no offset: untouched


def test_mix_of_offset_channels_has_no_offset(make_speech):
    speech = make_speech(2.0, seed=2)
    out = analysis_channels(np.stack([speech + 0.2, speech + 0.4], axis=1), MIX)
    np.testing.assert_allclose(out[0], speech, atol=2e-3)


@pytest.mark.parametrize("offset", [0.0, 1e-3, -2e-3])
def test_offsets_below_minus_50_dbfs_leave_the_samples_untouched(make_speech, offset):
    block = (make_speech(2.0, seed=3) + offset).astype(np.float32)[:, None]
    np.testing.assert_array_equal(analysis_channels(block, SPLIT), block.T)


def test_what_offset_is_negligible_is_a_setting(make_speech):
    """An offset of -46 dBFS is taken out by default, left with a -40 dBFS limit."""
    speech = make_speech(2.0, seed=3)
    block = (speech + 5e-3).astype(np.float32)[:, None]
    np.testing.assert_allclose(analysis_channels(block, SPLIT)[0], speech, atol=1e-3)
    lenient = ChannelSettings(negligible_dc_db=-40.0)
    np.testing.assert_array_equal(analysis_channels(block, lenient), block.T)
    coarse = analysis_channels(block, ChannelSettings(dc_chunk=len(speech)))  # one chunk
    np.testing.assert_allclose(coarse[0], speech + 5e-3 - block.mean(), atol=1e-7)


def test_damaged_float_samples_give_no_warning():
    # a damaged float file: garbage up to float32's limit, and inf and NaN samples
    huge = np.full((4096, 1), 3e38, dtype=np.float32)
    huge[::7] = -3e38
    broken = huge.copy()
    broken[5], broken[9] = np.inf, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out_huge = analysis_channels(huge, SPLIT)
        out_broken = analysis_channels(broken, SPLIT)
    np.testing.assert_array_equal(out_huge, huge.T)  # beyond full scale: no offset
    np.testing.assert_array_equal(out_broken, broken.T)  # none can be measured
