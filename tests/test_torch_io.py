"""vidcore.torch_io: .pth files -> numpy state dicts, safely."""

import argparse

import numpy as np
import pytest

from vidcore import torch_io
from vidcore.errors import UserInputError

torch = pytest.importorskip("torch")


def test_reads_a_training_checkpoint_with_its_namespace(tmp_path):
    """torchvision's recipe saves {"model", "optimizer", "args": Namespace,
    "epoch"}: read with weights_only=True, the Namespace allowed."""
    lin = torch.nn.Linear(3, 2)
    path = str(tmp_path / "checkpoint.pth")
    torch.save({"model": lin.state_dict(),
                "optimizer": torch.optim.SGD(lin.parameters(),
                                             lr=0.1).state_dict(),
                "args": argparse.Namespace(lr=0.1, model="r2plus1d_18"),
                "epoch": 3}, path)
    state = torch_io.read_state_dict(path)
    assert sorted(state) == ["bias", "weight"]
    np.testing.assert_array_equal(state["weight"],
                                  lin.weight.detach().numpy())


def test_strips_data_parallel_prefix_and_keeps_integer_buffers(tmp_path):
    bn = torch.nn.BatchNorm1d(4)
    path = str(tmp_path / "dp.pth")
    torch.save({f"module.{k}": v for k, v in bn.state_dict().items()}, path)
    state = torch_io.read_state_dict(path)
    assert "running_mean" in state and state["weight"].dtype == np.float32
    assert state["num_batches_tracked"].dtype == np.int64


def test_errors_name_the_file(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        torch_io.read_state_dict(str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserInputError, match="not a readable PyTorch"):
        torch_io.read_state_dict(str(bad))
    path = str(tmp_path / "mixed.pth")
    torch.save({"weight": torch.zeros(2), "note": "text"}, path)
    with pytest.raises(UserInputError, match="entry 'note' is a str"):
        torch_io.read_state_dict(path, expected="a test state dict")
