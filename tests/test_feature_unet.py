"""The feature-returning view of nnU-Net's U-Net must behave exactly like the U-Net it shares parameters with."""
from __future__ import annotations

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from torch import nn

from nnunet_glua.training.feature_unet import FeatureTapUNet


def _unet(kind: str, dims: int = 3, deep_supervision: bool = True):
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    norm = nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d
    common = dict(input_channels=1, n_stages=4, features_per_stage=[4, 8, 16, 16], conv_op=conv, kernel_sizes=3,
                  strides=[1, 2, 2, 2], num_classes=3, norm_op=norm, norm_op_kwargs={"affine": True},
                  nonlin=nn.LeakyReLU, deep_supervision=deep_supervision)
    if kind == "plain":
        return PlainConvUNet(n_conv_per_stage=2, n_conv_per_stage_decoder=2, **common)
    return ResidualEncoderUNet(n_blocks_per_stage=[1, 1, 2, 2], n_conv_per_stage_decoder=1, **common)


@pytest.mark.parametrize("kind", ["plain", "resenc"])
@pytest.mark.parametrize("deep_supervision", [True, False])
def test_same_logits_and_shared_parameters(kind, deep_supervision):
    torch.manual_seed(0)
    unet = _unet(kind, deep_supervision=deep_supervision).eval()
    tap = FeatureTapUNet(unet, feature_stages=(-2, 0))
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        expected = unet(x)
        plain = tap(x)
        logits, feats = tap(x, return_features=True)
    for got in (plain, logits):
        if deep_supervision:
            assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))
        else:
            assert torch.equal(got, expected)
    # stage order follows the request; shapes follow the decoder resolution
    assert [tuple(f.shape) for f in feats] == [(2, 8, 8, 8, 8), (2, 16, 4, 4, 4)]
    assert tap.stage_channels() == [8, 16]
    # shared, not copied: the same keys (minus the prefix) and the very same tensors
    assert set(tap.state_dict().keys()) == set(unet.state_dict().keys())
    assert all(a is b for a, b in zip(tap.parameters(), unet.parameters()))


def test_feature_gradient_reaches_the_shared_unet():
    unet = _unet("plain", dims=2)
    tap = FeatureTapUNet(unet, feature_stages=(-1,))
    _, (f,) = tap(torch.randn(1, 1, 16, 16), return_features=True)
    f.mean().backward()
    assert unet.encoder.stages[0][0].convs[0].conv.weight.grad is not None


def test_bad_stage_index_is_explained():
    with pytest.raises(ValueError, match="3 decoder stages"):
        FeatureTapUNet(_unet("plain"), feature_stages=(5,))
    with pytest.raises(TypeError, match="not a dynamic_network_architectures U-Net"):
        FeatureTapUNet(nn.Conv3d(1, 1, 1))


@pytest.mark.parametrize("deep_supervision", [True, False])
def test_samples_past_num_segmented_stop_at_the_tapped_stage(deep_supervision):
    """Target samples need only the aligned stage: their logits are not computed, and what the first samples get
    is unchanged (instance normalisation keeps samples apart)."""
    torch.manual_seed(0)
    unet = _unet("plain", deep_supervision=deep_supervision).eval()
    tap = FeatureTapUNet(unet, feature_stages=(1,))
    x = torch.randn(5, 1, 16, 16, 16)
    calls = []
    hooks = [head.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
             for head in unet.decoder.seg_layers]
    hooks += [unet.decoder.stages[-1].register_forward_hook(lambda m, args, out: calls.append(out.shape[0]))]
    with torch.no_grad():
        full_logits, full_features = tap(x, return_features=True)
        calls.clear()
        logits, features = tap(x, return_features=True, num_segmented=2)
    for h in hooks:
        h.remove()
    assert calls and all(n == 2 for n in calls), "heads and the finest stage must see the 2 segmented samples only"
    assert torch.allclose(features[0], full_features[0], atol=1e-6) and features[0].shape[0] == 5
    full_logits = full_logits if deep_supervision else [full_logits]
    logits = logits if deep_supervision else [logits]
    assert all(torch.allclose(a[:2], b, atol=1e-5) for a, b in zip(full_logits, logits))
