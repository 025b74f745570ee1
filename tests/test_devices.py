"""Device and dtype names from the user: parsed in one place, bad ones a one-line InputError."""
import pytest
import torch

from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    default = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto") == default
    with pytest.raises(InputError, match="device 'foo' is not a torch device"):
        resolve_device("foo")
    with pytest.raises(InputError, match="device 'cuda:99': "):
        resolve_device("cuda:99")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda():
    with pytest.raises(InputError, match="device 'cuda': no CUDA device on this machine"):
        resolve_device("cuda")


def test_resolve_dtype():
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype("float16", "cuda") is torch.float16
    assert resolve_dtype("auto", "cpu") is torch.float32 and resolve_dtype(None, torch.device("cuda")) is torch.bfloat16
    with pytest.raises(InputError, match="dtype 'int8': choose from auto, float32, bfloat16, float16"):
        resolve_dtype("int8")
