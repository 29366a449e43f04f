"""Rendering: the landmark-drawn conditioning images the generator reads."""

from amg.conditioning.draw import N_CHANNELS, conditioning_to_rgb, render_conditioning, render_sequence

__all__ = ["N_CHANNELS", "render_conditioning", "render_sequence", "conditioning_to_rgb"]
