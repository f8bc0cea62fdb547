"""Test configuration: import this checkout's packages (also from a git worktree), fixed seeds."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (os.path.join(ROOT, "python"), ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Generated-input tests (tests/test_properties.py): reproducible by default. "ci" derandomizes
# (each test's examples come from a seed fixed by the test's name) and keeps the counts bounded;
# "sanitize" is for the 3-10x slower ASan+UBSan run; "large" explores much more, with fresh
# randomness on every run, for local soak testing. Select with HYPOTHESIS_PROFILE=<name>.
_common = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=30, derandomize=True, **_common)
settings.register_profile("sanitize", max_examples=10, derandomize=True, **_common)
settings.register_profile("large", max_examples=1000, derandomize=False, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: large inputs (run in CI; deselect with -m 'not slow')")
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped where there is none)")
    config.addinivalue_line("markers", "cuda_emu: CUDA kernels run on the CPU emulation (tools/cuda_emu; "
                                       "needs g++ with libasan, no GPU)")


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA device on this machine"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
