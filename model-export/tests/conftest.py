import os

import pytest
import torch

# Two cores are shared with other work: one intra-op thread keeps timings stable.
torch.set_num_threads(int(os.environ.get("SMDIM_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def tiny_model():
    from smdim.config import get_config
    from smdim.model import Denoiser

    torch.manual_seed(0)
    return Denoiser(get_config("tiny").model).eval()
