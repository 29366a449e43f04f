"""Measured quality: image metrics here; `amg eval` and its report build on them."""
