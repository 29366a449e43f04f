"""AMG (Audio Motion GAN): person-specific talking-head avatars driven by speech."""

__version__ = "0.1.0"
