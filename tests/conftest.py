import pytest
import torch

from restormer.presets import shared_dir

SHARED = shared_dir()


def need_shared(*parts: str):
    """Skip (with the reason) when a file or folder of ../shared is absent, e.g. in a user's fresh clone."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (../shared beside the project root, or RESTORMER_SHARED)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(2)
