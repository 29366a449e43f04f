"""GAN training components."""
