"""Stage 6: the avatar's own face refiner (replaces the seed's GFPGAN, which needs downloaded weights)."""
