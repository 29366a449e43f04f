"""AMG's fixed rates: every video it writes and every per-frame array (tracks, speech features, motion) is at
FPS; all speech is resampled to SAMPLE_RATE on the way in."""

FPS = 25
SAMPLE_RATE = 16000
