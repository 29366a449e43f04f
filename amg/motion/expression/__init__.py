"""Audio→Expression, the lip-sync network: its network, training and inference."""
