"""`amg sample`: the README's sample media come from an installed registry wheel, not from a download."""

from __future__ import annotations

import importlib.util

import pytest

from amg.cli import main as amg_main
from amg.cli.samples import SAMPLE_AUDIO, SAMPLE_VIDEO
from amg.core.layout import Layout
from amg.media import probe_video


@pytest.mark.skipif(importlib.util.find_spec("psychopy") is None, reason="pip install --no-deps psychopy==2026.2.5")
def test_sample_puts_a_talking_clip_and_a_speech_clip_in_the_dataroot(tmp_path):
    assert amg_main(["sample", str(tmp_path)]) == 0
    layout = Layout(tmp_path)
    video, audio = probe_video(layout.video_source(SAMPLE_VIDEO)), probe_video(layout.audio_source(SAMPLE_AUDIO))
    assert video.has_audio and 7 < video.duration < 9 and (video.width, video.height) == (352, 288)
    assert audio.has_audio and 5 < audio.duration < 7
    assert amg_main(["sample", str(tmp_path)]) == 0  # idempotent
