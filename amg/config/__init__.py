"""Typed configurations: a dataclass per stage (model fields vs schedule fields), the loader that layers
defaults, presets (YAML data), `--config` and `--set`, and the config saved beside every trained stage."""

from amg.config.avatar import AvatarConfig
from amg.config.enhance import EnhanceConfig
from amg.config.gan import GanConfig
from amg.config.loader import (
    PRESETS,
    load_config,
    preset_overrides,
    resolve_increments,
    saved_holdout,
    trained_holdouts,
)
from amg.config.motion import (
    Audio2ExpressionConfig,
    Audio2PoseConfig,
    AudioFeatureConfig,
    EyesConfig,
    Head2BodyConfig,
    MotionConfig,
    Pose2FaceConfig,
)
from amg.config.preprocess import PreprocessConfig
from amg.config.render import (
    BLINK_MODES,
    ENGINES,
    FRAMINGS,
    LABEL,
    MAX_BLINK_RATE,
    MAX_LABEL_CHARS,
    MAX_POSE_SCALE,
    POSE_MODES,
    BlinkMode,
    Engine,
    LiveConfig,
    MotionOptions,
    RenderConfig,
)
from amg.core.constants import FPS, SAMPLE_RATE
from amg.core.dataclass_io import config_from_dict, config_to_dict, model_fields, read_saved_config, save_config

__all__ = [
    "BLINK_MODES",
    "ENGINES",
    "FRAMINGS",
    "FPS",
    "LABEL",
    "MAX_LABEL_CHARS",
    "MAX_BLINK_RATE",
    "MAX_POSE_SCALE",
    "POSE_MODES",
    "PRESETS",
    "SAMPLE_RATE",
    "Audio2ExpressionConfig",
    "Audio2PoseConfig",
    "AudioFeatureConfig",
    "AvatarConfig",
    "BlinkMode",
    "EnhanceConfig",
    "Engine",
    "EyesConfig",
    "GanConfig",
    "Head2BodyConfig",
    "LiveConfig",
    "MotionConfig",
    "MotionOptions",
    "Pose2FaceConfig",
    "PreprocessConfig",
    "RenderConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "model_fields",
    "preset_overrides",
    "read_saved_config",
    "resolve_increments",
    "save_config",
    "saved_holdout",
    "trained_holdouts",
]
