import os

import pytest
from hypothesis import settings

# CI must not flip on a new random example: the default profile replays the same examples every run;
# HYPOTHESIS_PROFILE=explore searches afresh.
settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def qwen3_folders(tmp_path_factory):
    """model_type -> a tiny random checkpoint folder of each Qwen3 family, in the hub's layout (built once)."""
    from liteframe.testing import save_tiny_qwen3
    from liteframe.testing.qwen3 import MODELS

    root = tmp_path_factory.mktemp("qwen3")
    return {model_type: save_tiny_qwen3(root / model_type, model_type) for model_type in MODELS}


@pytest.fixture(scope="module")
def teacher():
    """A tiny InternViT teacher with every tensor distinctive (transformers zero-inits CLS and positions); one per
    test module, which may change its dtype."""
    import torch

    from liteframe.models import Teacher, tiny_internvl_config

    torch.manual_seed(0)
    teacher = Teacher.from_config(tiny_internvl_config())
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return teacher
