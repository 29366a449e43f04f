"""Speech → per-video-frame (25 fps) features for lip-sync, alike for any voice, language and channel."""

from amg.audio.features import (
    FPS,
    SAMPLE_RATE,
    AudioFeatures,
    compute_features,
    features_for_audio,
    features_for_video,
)

__all__ = [
    "FPS",
    "SAMPLE_RATE",
    "AudioFeatures",
    "compute_features",
    "features_for_audio",
    "features_for_video",
]
