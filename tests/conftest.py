"""Shared pytest set-up — kept minimal.

- One torch thread for the whole suite: its matrices are tiny, and on a 2-core machine extra
  OpenMP threads only wait for each other (a 64×6 matmul was seen taking 20 ms with 2 threads).
- Tests marked ``gpu`` skip when CUDA is absent.
- The experiments' process-wide caches of loaded data and optima are emptied around every test: a
  test that monkeypatches the loader must not leave its data behind for the next one.
"""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_experiment_caches():
    from overparam.experiments import base

    base._DATA_CACHE.clear()
    base._OPTIMA_CACHE.clear()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
