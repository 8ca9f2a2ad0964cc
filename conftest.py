"""Test-session settings shared by the notebooks (nbval) and the unit tests.

With pytest-xdist running one worker per core (pyproject.toml's addopts), the cores are all taken by
the test run itself: each worker, and each notebook kernel or Colab-runtime kernel it starts, then
computes on one thread. Several threads per worker would only wait for each other across workers
(a multi-threaded step waits for its slowest thread), and the outputs do not depend on the thread
count (polybook._numerics), so this changes how long the tests take, not what they compare.
"""

import os


def pytest_configure(config):
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and int(workers) >= (os.cpu_count() or 1):
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by every kernel this worker starts
        import torch

        torch.set_num_threads(1)
