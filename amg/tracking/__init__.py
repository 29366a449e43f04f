"""Face tracking: MediaPipe capture, mesh topology, head-pose and expression fitting, temporal smoothing."""
