"""AMG (Audio Motion GAN): person-specific talking-head avatars driven by speech."""

import os

# OpenMP threads that wait for work sleep instead of spinning. With spinning, PyTorch's second thread burns a
# core between ops, and as soon as another process wants that core every op waits for the scheduler: measured
# on 2 cores beside another process using one, an image-GAN step took 7.1 s with 2 threads and 0.51 s with
# them sleeping (0.62 s on 1 thread). Read when OpenMP starts, so it is set here, before torch is imported;
# a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
