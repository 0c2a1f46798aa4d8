"""Local feature mask, feature discriminator and adversarial losses (no nnU-Net training loop needed)."""
from __future__ import annotations

import math

import pytest
import torch

from nnunet_glua.alignment.discriminator import FeatureDiscriminator
from nnunet_glua.alignment.local_mask import (gap_map, soft_gap_weights, top_fraction_mask,
                                              valid_feature_locations)
from nnunet_glua.alignment.losses import discriminator_loss, masked_alignment_loss


@pytest.mark.parametrize("ratio", [0.05, 0.2, 0.5, 1.0])
def test_top_fraction_selects_exactly_the_fraction_of_valid_locations(ratio):
    torch.manual_seed(0)
    gap = torch.rand(3, 1, 6, 8, 5)
    valid = torch.rand(3, 1, 6, 8, 5) > 0.3
    valid[2] = False  # a sample entirely outside the image selects nothing
    mask = top_fraction_mask(gap, valid, ratio)
    assert mask.dtype == torch.bool and mask.shape == gap.shape
    for i in range(3):
        n_valid = int(valid[i].sum())
        assert int(mask[i].sum()) == math.ceil(ratio * n_valid)
        assert not (mask[i] & ~valid[i]).any()
        if mask[i].any() and (valid[i] & ~mask[i]).any():
            # every selected location has a gap at least as large as every unselected valid one
            assert gap[i][mask[i]].min() >= gap[i][valid[i] & ~mask[i]].max()


def test_mask_ratio_out_of_range_is_refused():
    with pytest.raises(ValueError, match="ratio"):
        top_fraction_mask(torch.rand(1, 1, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool), 0.0)


def test_gap_is_largest_where_discriminator_is_sure_of_target():
    scores = torch.tensor([1.0, 0.5, 0.0]).reshape(1, 1, 3, 1)
    gap = gap_map(scores)
    assert torch.argmax(gap.flatten()) == 2 and gap.flatten()[0] == 0


def test_valid_feature_locations_downsamples_by_area():
    valid = torch.zeros(1, 1, 8, 8, 8, dtype=torch.bool)
    valid[..., :6, :, :] = True  # last two voxel rows along X are padding
    feat_valid = valid_feature_locations(valid, (4, 4, 4))
    assert feat_valid.shape == (1, 1, 4, 4, 4)
    assert feat_valid[..., :3, :, :].all() and not feat_valid[..., 3, :, :].any()


def test_soft_weights_average_one_over_valid_and_rank_by_gap():
    gap = torch.tensor([0.1, 0.5, 2.0, 9.0]).reshape(1, 1, 4, 1)
    valid = torch.tensor([True, True, True, False]).reshape(1, 1, 4, 1)
    w = soft_gap_weights(gap, valid)
    assert w.flatten()[3] == 0
    assert torch.isclose(w[valid].mean(), torch.tensor(1.0))
    assert w.flatten()[2] > w.flatten()[1] > w.flatten()[0]


def test_alignment_gradient_reaches_only_selected_locations():
    torch.manual_seed(0)
    disc = FeatureDiscriminator(in_channels=4, spatial_dims=3, width=8, num_layers=2)
    features = torch.randn(2, 4, 5, 6, 7, requires_grad=True)
    valid = torch.ones(2, 1, 5, 6, 7, dtype=torch.bool)
    with torch.no_grad():
        gap = gap_map(disc(features))
    mask = top_fraction_mask(gap, valid, 0.1)
    loss = masked_alignment_loss(disc, features, mask)
    loss.backward()
    grad_locations = features.grad.abs().sum(dim=1, keepdim=True) > 0
    assert grad_locations.any()
    assert not (grad_locations & ~mask).any(), "gradient leaked to unselected locations"


def test_alignment_loss_is_the_mean_over_selected_locations():
    class Constant(torch.nn.Module):
        def forward(self, f):
            return f[:, :1]
    f = torch.zeros(1, 1, 2, 2)
    f[0, 0, 0, 0] = 1.0  # score 1 = source-like: no loss there
    mask = torch.tensor([[[[True, True], [False, False]]]])
    # selected scores are 1 and 0 -> losses 0 and 1 -> mean 0.5
    assert masked_alignment_loss(Constant(), f, mask).item() == pytest.approx(0.5)


def test_discriminator_learns_to_separate_domains_per_location():
    torch.manual_seed(0)
    disc = FeatureDiscriminator(in_channels=3, spatial_dims=2, width=16, num_layers=2)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    valid = torch.ones(4, 1, 8, 8, dtype=torch.bool)
    for _ in range(60):
        src = torch.randn(4, 3, 8, 8) + 1.0
        tgt = torch.randn(4, 3, 8, 8) - 1.0
        loss = discriminator_loss(disc(src), disc(tgt), valid, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    with torch.no_grad():
        assert disc(torch.randn(2, 3, 8, 8) + 1).mean() > 0.7
        assert disc(torch.randn(2, 3, 8, 8) - 1).mean() < 0.3


def test_discriminator_keeps_resolution_and_checks_input():
    disc = FeatureDiscriminator(in_channels=5, spatial_dims=3, width=4)
    assert disc(torch.randn(2, 5, 3, 4, 6)).shape == (2, 1, 3, 4, 6)
    with pytest.raises(ValueError, match="expected features"):
        disc(torch.randn(2, 5, 3, 4))
