"""Infrastructure every floor may use: errors, atomic files, the DATAROOT layout, progress, threads, ranks,
checkpoints and the shared training loop, image scores and tensors."""
