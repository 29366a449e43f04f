"""What several stages share, each once: image scores and masks, the held-out split, schedules."""
