"""Translator building blocks: network shapes for odd slice sizes, the objective on an overfitted batch, k-means and
the style bank, the slice sampler's rules, and the configuration's round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunet_glua.style.config import LossWeights, TranslatorConfig
from nnunet_glua.style.kmeans import kmeans
from nnunet_glua.style.losses import discriminator_loss, generator_loss, translation_pass
from nnunet_glua.style.networks import build_discriminators, build_generators, padded_size
from nnunet_glua.style.slice_sampler import SliceSampler
from nnunet_glua.style.style_bank import build_style_bank
from nnunet_glua.style.synthetic import tiny_config, write_synthetic_folder


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("size", [(40, 56), (37, 53), (32, 40)])
def test_generator_and_discriminators_handle_odd_sizes(size):
    cfg = tiny_config().network
    gens = build_generators(2, cfg)
    crop = padded_size(size, cfg.spatial_multiple)
    discs = build_discriminators(2, cfg, crop)
    x = torch.randn(3, 2, *size)
    # translation accepts the raw size (pads and crops back)
    y = gens.translate(x, torch.randn(3, cfg.style_dim), "target")
    assert y.shape == x.shape
    # training works on the padded crop size
    xc = torch.randn(3, 2, *crop)
    content, style = gens.encode(xc, "source")
    assert content.shape == (3, cfg.base_channels * 4, crop[0] // 4, crop[1] // 4)
    assert style.shape == (3, cfg.style_dim)
    assert gens.decode(content, style, "target").shape == xc.shape
    outs = discs.image["source"](xc)
    assert len(outs) >= 1 and all(o.shape[0] == 3 and min(o.shape[-2:]) >= 1 for o in outs)
    assert discs.content(content).shape == (3,)


def test_reconstruction_losses_drop_on_an_overfitted_batch():
    torch.manual_seed(0)
    cfg = tiny_config()
    gens = build_generators(1, cfg.network)
    discs = build_discriminators(1, cfg.network, (32, 40))
    opt_g = torch.optim.Adam(gens.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discs.parameters(), lr=2e-3, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(1)
    xs = torch.randn(4, 1, 32, 40, generator=gen).cumsum(-1) / 6  # smooth-ish structure, not white noise
    xt = -xs.flip(-1) + 0.1 * torch.randn(4, 1, 32, 40, generator=gen)
    w = LossWeights()
    history = []
    for _ in range(30):
        p = translation_pass(gens, xs, xt)
        discs.requires_grad_(True)
        d_total, d_parts = discriminator_loss(p.detached(), discs, xs, xt, w)
        opt_d.zero_grad()
        d_total.backward()
        opt_d.step()
        discs.requires_grad_(False)
        g_total, g_parts = generator_loss(p, discs, xs, xt, w)
        opt_g.zero_grad()
        g_total.backward()
        opt_g.step()
        history.append({k: float(v) for k, v in {**g_parts, **d_parts}.items()})
    assert all(np.isfinite(list(h.values())).all() for h in history)
    first, last = history[0], history[-1]
    assert last["self_rec"] < 0.6 * first["self_rec"]
    assert last["cross_cycle"] < 0.7 * first["cross_cycle"]


def test_kmeans_finds_separated_clusters_and_is_seeded():
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 6.0]])
    x = torch.cat([m + 0.3 * torch.randn(50, 2, generator=gen) for m in means])
    a, b = kmeans(x, 3, seed=3), kmeans(x, 3, seed=3)
    assert a.centres.shape == (3, 2)
    assert torch.equal(a.centres, b.centres)
    found = sorted(a.centres.tolist())
    for centre, expected in zip(found, sorted(means.tolist())):
        assert np.allclose(centre, expected, atol=0.2)
    # fewer distinct points than k: k shrinks instead of producing empty clusters
    assert kmeans(torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]), 5).centres.shape == (2, 2)


def test_style_bank_has_k_centres_and_samples_reproducibly():
    gen = torch.Generator().manual_seed(0)
    codes = torch.cat([torch.randn(40, 8, generator=gen) + 4 * i for i in range(4)])
    bank = build_style_bank(codes, 4, seed=0)
    assert bank.centres.shape == (4, 8) and bank.spreads.shape == (4, 8)
    assert torch.isclose(bank.weights.sum(), torch.tensor(1.0))
    s1 = bank.sample(16, torch.Generator().manual_seed(7))
    s2 = bank.sample(16, torch.Generator().manual_seed(7))
    assert s1.shape == (16, 8) and torch.equal(s1, s2)
    # mixture draws stay near some centre (noise 0.5 of the within-cluster spread)
    nearest = torch.cdist(s1, bank.centres).min(1).values
    assert float(nearest.max()) < 4.0
    real = build_style_bank(codes, 4, sampling="real")
    drawn = real.sample(10, torch.Generator().manual_seed(1))
    assert all(any(torch.equal(d, c) for c in codes) for d in drawn)
    restored = type(bank).from_state(bank.to_state())
    assert torch.equal(restored.sample(5, torch.Generator().manual_seed(2)),
                       bank.sample(5, torch.Generator().manual_seed(2)))


def _save(folder, name, data, seg):
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    blocks, chunks = comp_blosc2_params(data.shape, data.shape[1:], 4)
    nnUNetDatasetBlosc2.save_case(data, seg, {"spacing": [1, 1, 1]}, str(folder / name), chunks=chunks,
                                  blocks=blocks)


def test_slice_sampler_skips_empty_slices_pads_and_restores_state(tmp_path):
    data = np.zeros((1, 6, 20, 24), np.float32)
    seg = np.full((1, 6, 20, 24), -1, np.int8)
    # slices 0 and 5 are empty, slice 1 has a 2-pixel body (below 5 %), slices 2-4 are good
    seg[0, 1, 10, 10:12] = 0
    data[0, 1, 10, 10:12] = 1.0
    rng = np.random.default_rng(0)
    seg[0, 2:5, 4:16, 4:20] = 0
    data[0, 2:5, 4:16, 4:20] = rng.normal(size=(3, 12, 16))
    _save(tmp_path, "case_a", data, seg)
    sampler = SliceSampler(tmp_path, (32, 40), seed=1, progress=False, name="test")
    assert sorted(sampler.slice_index.tolist()) == [2, 3, 4]
    state = sampler.state_dict()
    batch = sampler.sample(5)
    assert batch.images.shape == (5, 1, 32, 40) and batch.body.shape == (5, 1, 32, 40)
    # the 20x24 slice is smaller than the crop: zero padding outside, body only where the slice has it
    assert (batch.images[~batch.body] == 0).all() and batch.body.sum(axis=(1, 2, 3)).min() == 12 * 16
    sampler.load_state_dict(state)
    assert np.array_equal(sampler.sample(5).images, batch.images)
    with pytest.raises(ValueError, match="test cases"):
        SliceSampler(tmp_path, (32, 40), forbidden_identifiers={"case_a"}, progress=False)


def test_slice_sampler_refuses_labelled_target_and_empty_folders(tmp_path):
    labelled = write_synthetic_folder(tmp_path / "t", "target", 1, (4, 24, 24), with_labels=True)
    with pytest.raises(ValueError, match="unlabelled"):
        SliceSampler(labelled, (24, 24), expect_unlabelled=True, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="(no preprocessed cases|not an nnU-Net)"):
        SliceSampler(tmp_path / "empty", (24, 24), progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SliceSampler(tmp_path / "missing", (24, 24), progress=False)


def test_config_round_trip_and_validation(tmp_path):
    cfg = tiny_config(lr=3e-4)
    again = TranslatorConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.network.base_channels == 8 and again.slice_size == (32, 40)
    with pytest.raises(ValueError, match="unknown translator config keys"):
        TranslatorConfig.from_dict({**cfg.to_dict(), "learning_rate": 1})
    with pytest.raises(ValueError, match="slice_size"):
        tiny_config(slice_size=[4, 40])
    with pytest.raises(ValueError, match="style_bank_sampling"):
        tiny_config(style_bank_sampling="prior")


def test_presets_start_from_the_defaults_and_unknown_names_are_refused():
    assert TranslatorConfig.preset("default") == TranslatorConfig()
    cpu = TranslatorConfig.preset("cpu_demo")
    assert cpu.network.base_channels < TranslatorConfig().network.base_channels
    assert cpu.losses == TranslatorConfig().losses  # a preset sizes the run; it does not change the objective
    with pytest.raises(ValueError, match="cpu_demo"):
        TranslatorConfig.preset("fast")


def test_domain_specific_content_layers_start_identical_and_are_trained_apart():
    torch.manual_seed(0)
    cfg = tiny_config(network={"domain_content_layers": 2})
    gens = build_generators(1, cfg.network)
    stems = gens.content_encoder.stems
    x = torch.randn(2, 1, 32, 40)
    # identical at the start: one image gives one content code whichever domain it is declared to be
    assert torch.equal(gens.content_encoder(x, "source"), gens.content_encoder(x, "target"))
    # separate parameters, so training can move them apart
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(stems["source"].parameters(),
                                                              stems["target"].parameters()))
    with pytest.raises(ValueError, match="domain"):
        gens.content_encoder(x)
    shared = build_generators(1, tiny_config(network={"domain_content_layers": 0}).network)
    assert shared.content_encoder.stems is None
    assert shared.content_encoder(x).shape == gens.content_encoder(x, "source").shape


def test_content_discriminator_sees_per_sample_offset_and_scale():
    # codes of the two domains that differ only in their global statistics must be separable: a normalisation before
    # the pooling would make them identical to the discriminator
    torch.manual_seed(0)
    cfg = tiny_config().network
    disc = build_discriminators(1, cfg, (32, 40)).content
    code = torch.randn(4, cfg.base_channels * 4, 8, 10)
    assert (disc(code) - disc(3 * code + 2)).abs().min() > 1e-3


def test_real_negatives_add_a_discriminator_term_only_when_weighted():
    torch.manual_seed(0)
    cfg = tiny_config()
    gens = build_generators(1, cfg.network)
    discs = build_discriminators(1, cfg.network, (32, 40))
    x_s, x_t = torch.randn(2, 1, 32, 40), torch.randn(2, 1, 32, 40) + 1
    with torch.no_grad():
        p = translation_pass(gens, x_s, x_t)
    with_neg, parts = discriminator_loss(p, discs, x_s, x_t, LossWeights(image_real_negatives=1.0))
    without, parts0 = discriminator_loss(p, discs, x_s, x_t, LossWeights(image_real_negatives=0.0))
    assert "d_negatives" in parts and "d_negatives" not in parts0
    assert torch.isclose(with_neg - without, parts["d_negatives"])
