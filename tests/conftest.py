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


@pytest.fixture(scope="module")
def art():
    """Small FP32/FP16 ONNX exports and a checkpoint of a tiny model (``runtime_helpers``), built once."""
    from runtime_helpers import small_artifacts

    return small_artifacts()
