"""Audio→Head pose, the head-motion network: its network, training and inference."""
