"""A second stage keeps the segmentation head of ``-pretrained_weights`` when it segments the same labels."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnunet_glua.training.pretrained_head import load_segmentation_head, pretrained_weights_file

LABELS = {"background": 0, "MYO": 1, "LAC": 2}


class _Decoder(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.stage = nn.Conv2d(4, 4, 3)
        self.seg_layers = nn.ModuleList([nn.Conv2d(4, classes, 1), nn.Conv2d(4, classes, 1)])


class _Net(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.decoder = _Decoder(classes)


class _Wrapped(nn.Module):  # what DDP looks like from outside: the network under .module
    def __init__(self, net: nn.Module):
        super().__init__()
        self.module = net


def _checkpoint(tmp_path, net: nn.Module, labels) -> str:
    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": net.state_dict(), "init_args": {"dataset_json": {"labels": labels}}}, path)
    return path


def test_the_path_comes_from_nnunets_command_line():
    argv = ["nnUNetv2_train", "903", "2d", "0", "-tr", "GLUATrainer", "-pretrained_weights", "/m/checkpoint.pth"]
    assert str(pretrained_weights_file(argv)) == "/m/checkpoint.pth"
    assert str(pretrained_weights_file(["x", "-pretrained_weights=/a.pth"])) == "/a.pth"
    assert pretrained_weights_file(["nnUNetv2_train", "903", "2d", "0"]) is None


def test_the_head_of_a_model_with_the_same_labels_is_taken_whatever_wraps_the_network(tmp_path):
    torch.manual_seed(0)
    stage_one, stage_two = _Net(), _Net()
    body_before = stage_two.decoder.stage.weight.detach().clone()
    path = _checkpoint(tmp_path, stage_one, LABELS)
    message = load_segmentation_head(_Wrapped(stage_two), path, {"labels": dict(LABELS)})
    assert "taken from" in message and "4 tensors" in message
    for mine, theirs in zip(stage_two.decoder.seg_layers.parameters(), stage_one.decoder.seg_layers.parameters()):
        assert torch.equal(mine, theirs)
    assert torch.equal(stage_two.decoder.stage.weight, body_before)  # the rest is nnU-Net's loader's business


def test_other_labels_or_another_head_leave_nnunets_fresh_head(tmp_path):
    torch.manual_seed(0)
    fresh = _Net()
    head_before = [p.detach().clone() for p in fresh.decoder.seg_layers.parameters()]
    other_labels = {"background": 0, "liver": 1, "spleen": 2}
    message = load_segmentation_head(fresh, _checkpoint(tmp_path, _Net(), other_labels), {"labels": LABELS})
    assert "fresh" in message and "liver" in message
    message = load_segmentation_head(fresh, _checkpoint(tmp_path, _Net(classes=5), LABELS), {"labels": LABELS})
    assert "other segmentation layers" in message
    assert all(torch.equal(a, b) for a, b in zip(fresh.decoder.seg_layers.parameters(), head_before))


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_segmentation_head(_Net(), tmp_path / "nothing.pth", {"labels": LABELS})
