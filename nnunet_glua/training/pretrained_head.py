"""The segmentation head of ``-pretrained_weights``, kept when the checkpoint segments the same labels.

nnU-Net's ``load_pretrained_weights`` copies every weight except the segmentation layers (``.seg_layers.``, the
1x1 convolutions of every deep-supervision output): it is meant for pretraining on *other* labels. The second
stage of this package's recipe (source-only nnU-Net, then ``GLUATrainer ... -pretrained_weights``, or
self-training from a GLUA model) starts from a model of the *same* dataset and labels, and a re-initialised head
has to be learnt again inside the second stage's budget while the adaptation losses already pull on the features;
at the demo's budget this loses whole structures (docs/benchmarks.md, entry 16). So the trainers of this package
put the checkpoint's head back when the checkpoint's labels equal the dataset's, and leave nnU-Net's fresh head
otherwise.

nnU-Net hands the trainer no path: ``nnUNetv2_train`` loads the weights itself after ``initialize()``. The path is
read from its command line (``-pretrained_weights``; DDP workers inherit ``sys.argv``); a program that calls
nnU-Net's ``run_training`` itself gets nnU-Net's behaviour (it may call :func:`load_segmentation_head` itself).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

__all__ = ["SEGMENTATION_HEAD_KEY", "pretrained_weights_file", "load_segmentation_head"]

#: what nnU-Net's load_pretrained_weights skips
SEGMENTATION_HEAD_KEY = ".seg_layers."


def pretrained_weights_file(argv: Sequence[str]) -> Path | None:
    """The checkpoint nnU-Net was told to start from: the value of ``-pretrained_weights`` in ``argv`` (nnU-Net's
    ``nnUNetv2_train`` argument); ``None`` when it is not given."""
    for i, arg in enumerate(argv):
        if arg == "-pretrained_weights" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("-pretrained_weights="):
            return Path(arg.split("=", 1)[1])
    return None


def _plain_module(network: nn.Module) -> nn.Module:
    """The network under DDP's and ``torch.compile``'s wrappers (whose state-dict keys carry prefixes)."""
    network = getattr(network, "module", network)
    return getattr(network, "_orig_mod", network)


def load_segmentation_head(network: nn.Module, checkpoint_file: Path, dataset_json: Mapping[str, Any]) -> str:
    """Copy the segmentation layers of ``checkpoint_file`` (an nnU-Net checkpoint) into ``network`` when the
    checkpoint's ``dataset_json["labels"]`` equals ``dataset_json["labels"]`` and every head tensor has the same
    shape; otherwise leave ``network`` as it is.

    Returns one line for the training log saying which happened and why. Raises ``FileNotFoundError`` naming the
    file when it does not exist (nnU-Net would have failed on it before).
    """
    checkpoint_file = Path(checkpoint_file)
    if not checkpoint_file.is_file():
        raise FileNotFoundError(f"{checkpoint_file}: the -pretrained_weights checkpoint does not exist")
    checkpoint = torch.load(checkpoint_file, map_location="cpu", weights_only=False)
    stored_labels = ((checkpoint.get("init_args") or {}).get("dataset_json") or {}).get("labels")
    if stored_labels != dict(dataset_json["labels"]):
        return (f"segmentation head: nnU-Net's fresh one ({checkpoint_file} segments labels {stored_labels}, this "
                f"dataset {dict(dataset_json['labels'])})")
    module = _plain_module(network)
    own = module.state_dict()
    stored = checkpoint["network_weights"]
    head = {k: v for k, v in stored.items() if SEGMENTATION_HEAD_KEY in k and k in own}
    wanted = [k for k in own if SEGMENTATION_HEAD_KEY in k]
    if sorted(head) != sorted(wanted) or any(head[k].shape != own[k].shape for k in wanted):
        return f"segmentation head: nnU-Net's fresh one ({checkpoint_file} has other segmentation layers)"
    module.load_state_dict({**own, **head})
    return f"segmentation head: taken from {checkpoint_file} ({len(head)} tensors; same labels)"
