"""Networks of the disentangled 2D translator (MUNIT/DRIT family), sized from the data.

Parts (all 2D, inputs ``(N, C, H, W)`` in nnU-Net's z-scored intensity units, ``C`` = the dataset's channels):

* :class:`ContentEncoder` - 7x7 conv, ``n_downsampling`` stride-2 convs (channels double each time), residual blocks;
  instance norm throughout, so the content code carries no global intensity statistics. The first
  ``domain_content_layers`` layers exist once per domain (DRIT's split): one structure has a different intensity in
  each modality, often in the opposite order to its neighbours, and fully shared first layers would have to map two
  contradicting local patterns to one code. The residual blocks are shared. Both domains' copies start identical
  (see ``docs/style_tuning.md``: with independent random starts the translator learnt an inverted contrast in two
  of three seeds). Output ``(N, base_channels * 2**n_downsampling, H / 2**n, W / 2**n)``.
* :class:`StyleEncoder` - one per domain: convs without normalisation (normalisation would erase exactly the global
  statistics a style is made of), global average pooling, 1x1 conv to a ``style_dim`` vector ``(N, style_dim)``.
* :class:`AdaINDecoder` - one per domain: residual blocks whose instance-norm scale/shift come from an MLP on the
  style code, nearest-neighbour upsampling + 5x5 conv + layer norm, 7x7 output conv. The output is *linear*: there is
  no tanh because z-scored intensities are unbounded (a tanh would clip bright structures such as contrast-filled
  vessels). One decoder per domain (as in MUNIT) rather than one shared decoder, because the decoder must also learn
  the domain's intensity mapping (for example the inverted fat/fluid contrast between CT and T2 MR), which an 8-number
  style code cannot switch reliably.
* :class:`MultiScaleDiscriminator` - one per domain: LSGAN PatchGANs on the image at several scales (average-pool
  2x between scales). The number of scales and of stride-2 layers per scale shrink for small slices so that every
  output map is at least about 4 pixels on its shorter side.
* :class:`ContentDiscriminator` - on content codes, predicts the domain (one score per sample), so that the shared
  content space carries no domain information (DRIT). Convs without normalisation, then global average pooling: a
  normalisation right before the pooling would erase the per-sample statistics it has to judge.

Sizes: the generator needs in-plane sizes divisible by ``2**n_downsampling``. Training crops are sampled at that
multiple directly; :func:`pad_to_multiple` / :func:`crop_to` let translation handle any size (e.g. 37x53) by
replicate-padding and cropping back. All convolutions in the generator use reflect padding (no artificial dark
border), so slices must be at least ``2 * 2**n_downsampling`` pixels on each side.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_glua.style.config import NetworkConfig

__all__ = [
    "DOMAINS", "ContentEncoder", "StyleEncoder", "AdaINDecoder", "MultiScaleDiscriminator", "ContentDiscriminator",
    "TranslatorGenerators", "TranslatorDiscriminators", "build_generators", "build_discriminators",
    "pad_to_multiple", "crop_to", "padded_size", "content_channels",
]

DOMAINS = ("source", "target")


def content_channels(cfg: NetworkConfig) -> int:
    """Channels of the content code."""
    return cfg.base_channels * 2 ** cfg.n_downsampling


def _init_conv(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class _ConvBlock(nn.Sequential):
    """Conv -> optional norm -> optional activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, norm: str, act: str,
                 padding_mode: str = "reflect"):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding, padding_mode=padding_mode)]
        if norm == "instance":
            layers.append(nn.InstanceNorm2d(cout, affine=False))
        elif norm == "layer":
            # GroupNorm with one group = layer norm over (C, H, W) with a per-channel affine (MUNIT's upsampling norm)
            layers.append(nn.GroupNorm(1, cout))
        elif norm != "none":
            raise ValueError(f"unknown norm {norm!r}")
        if act == "relu":
            layers.append(nn.ReLU(inplace=True))
        elif act == "lrelu":
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        elif act != "none":
            raise ValueError(f"unknown activation {act!r}")
        super().__init__(*layers)


class _ResBlock(nn.Module):
    """Two 3x3 convs with instance norm and an identity skip."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _ConvBlock(channels, channels, 3, 1, 1, "instance", "relu"),
            _ConvBlock(channels, channels, 3, 1, 1, "instance", "none"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _content_layers(in_channels: int, cfg: NetworkConfig) -> list[nn.Module]:
    ch = cfg.base_channels
    layers: list[nn.Module] = [_ConvBlock(in_channels, ch, 7, 1, 3, "instance", "relu")]
    for _ in range(cfg.n_downsampling):
        layers.append(_ConvBlock(ch, ch * 2, 4, 2, 1, "instance", "relu"))
        ch *= 2
    return layers + [_ResBlock(ch) for _ in range(cfg.n_residual_blocks)]


class ContentEncoder(nn.Module):
    """``(N, C, H, W)`` of ``domain`` -> content code ``(N, base * 2**n_down, H / 2**n_down, W / 2**n_down)``.

    The first ``cfg.domain_content_layers`` layers (7x7 stem, then the downsampling convs; at most all of these)
    exist once per domain, the rest is shared. With 0 every layer is shared and ``domain`` is ignored.
    """

    def __init__(self, in_channels: int, cfg: NetworkConfig):
        super().__init__()
        split = min(cfg.domain_content_layers, 1 + cfg.n_downsampling)
        layers = _content_layers(in_channels, cfg)
        self.stems = nn.ModuleDict({d: nn.Sequential(*_content_layers(in_channels, cfg)[:split]) for d in DOMAINS}
                                   ) if split else None
        self.model = nn.Sequential(*layers[split:])
        self.out_channels = content_channels(cfg)

    def forward(self, x: torch.Tensor, domain: str | None = None) -> torch.Tensor:
        if self.stems is not None:
            if domain not in DOMAINS:
                raise ValueError(f"this content encoder has domain-specific first layers; pass domain as one of "
                                 f"{DOMAINS}, got {domain!r}")
            x = self.stems[domain](x)
        return self.model(x)


class StyleEncoder(nn.Module):
    """``(N, C, H, W)`` -> style code ``(N, style_dim)``; any ``H, W >= 1`` (zero padding, global pooling)."""

    def __init__(self, in_channels: int, cfg: NetworkConfig):
        super().__init__()
        ch = cfg.style_channels
        layers: list[nn.Module] = [_ConvBlock(in_channels, ch, 7, 1, 3, "none", "relu", padding_mode="zeros")]
        for i in range(cfg.style_downsampling):
            # channels double for the first two reductions only (MUNIT), then stay: the code is global anyway
            cout = ch * 2 if i < 2 else ch
            layers.append(_ConvBlock(ch, cout, 4, 2, 1, "none", "relu", padding_mode="zeros"))
            ch = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(ch, cfg.style_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(F.adaptive_avg_pool2d(h, 1)).flatten(1)


def _adain(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Instance norm with per-sample scale and shift ``(N, C)``: ``norm(x) * (1 + gamma) + beta``.

    ``1 + gamma`` (instead of MUNIT's raw scale) makes a freshly initialised decoder start close to plain instance
    norm, which keeps the first iterations stable.
    """
    return F.instance_norm(x) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class _AdaINResBlock(nn.Module):
    """Residual block with two AdaIN-normalised 3x3 convs; takes its 4 * channels AdaIN parameters per sample."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, padding_mode="reflect")
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, padding_mode="reflect")

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        g1, b1, g2, b2 = params.split(self.channels, dim=1)
        h = F.relu(_adain(self.conv1(x), g1, b1))
        return x + _adain(self.conv2(h), g2, b2)


class AdaINDecoder(nn.Module):
    """``(content (N, Cc, h, w), style (N, style_dim))`` -> image ``(N, C, h * 2**n_down, w * 2**n_down)``."""

    def __init__(self, out_channels: int, cfg: NetworkConfig):
        super().__init__()
        ch = content_channels(cfg)
        self.res_blocks = nn.ModuleList(_AdaINResBlock(ch) for _ in range(cfg.n_residual_blocks))
        mlp: list[nn.Module] = []
        din = cfg.style_dim
        for _ in range(max(cfg.mlp_layers - 1, 0)):
            mlp += [nn.Linear(din, cfg.mlp_dim), nn.ReLU(inplace=True)]
            din = cfg.mlp_dim
        self.mlp = nn.Sequential(*mlp)
        self.mlp_out = nn.Linear(din, 4 * ch * cfg.n_residual_blocks)
        up: list[nn.Module] = []
        for _ in range(cfg.n_downsampling):
            up += [nn.Upsample(scale_factor=2, mode="nearest"), _ConvBlock(ch, ch // 2, 5, 1, 2, "layer", "relu")]
            ch //= 2
        self.upsample = nn.Sequential(*up)
        self.output = nn.Conv2d(ch, out_channels, 7, 1, 3, padding_mode="reflect")

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        params = self.mlp_out(self.mlp(style)).chunk(max(len(self.res_blocks), 1), dim=1)
        h = content
        for blk, p in zip(self.res_blocks, params):
            h = blk(h, p)
        return self.output(self.upsample(h))


def _patch_layers(min_side: int, wanted: int) -> int:
    """Stride-2 layers so that the output map keeps >= ~4 pixels on the shorter side (at least one layer)."""
    if min_side < 8:
        return 1
    return max(1, min(wanted, int(math.floor(math.log2(min_side / 4.0)))))


class _PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int, channels: int, n_layers: int):
        super().__init__()
        layers: list[nn.Module] = []
        cin, ch = in_channels, channels
        for _ in range(n_layers):
            layers.append(_ConvBlock(cin, ch, 4, 2, 1, "none", "lrelu", padding_mode="zeros"))
            cin, ch = ch, min(ch * 2, channels * 8)
        layers.append(nn.Conv2d(cin, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MultiScaleDiscriminator(nn.Module):
    """LSGAN PatchGAN at several scales. Returns a list of score maps ``(N, 1, h_k, w_k)``, finest first.

    ``slice_size`` (H, W) of the training crops sets how many scales and layers fit (see module docstring).
    """

    def __init__(self, in_channels: int, cfg: NetworkConfig, slice_size: tuple[int, int]):
        super().__init__()
        side = min(slice_size)
        self.scales = nn.ModuleList()
        for k in range(cfg.disc_scales):
            s = side // (2 ** k)
            if k > 0 and s < 16:  # coarser scales of a tiny slice add nothing but border effects
                break
            self.scales.append(_PatchDiscriminator(in_channels, cfg.disc_channels, _patch_layers(s, cfg.disc_layers)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for k, disc in enumerate(self.scales):
            if k > 0:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(disc(x))
        return outputs


class ContentDiscriminator(nn.Module):
    """Content code ``(N, Cc, h, w)`` -> one domain score per sample ``(N,)`` (LSGAN: source 1, target 0)."""

    def __init__(self, cfg: NetworkConfig, code_size: tuple[int, int]):
        super().__init__()
        cin = content_channels(cfg)
        ch = cfg.content_disc_channels
        layers: list[nn.Module] = []
        # stride 2 while the map keeps >= 2 pixels; the last layer never strides
        n_strided = max(0, min(cfg.content_disc_layers - 1, int(math.floor(math.log2(max(min(code_size), 1) / 2)))))
        for i in range(cfg.content_disc_layers):
            stride = 2 if i < n_strided else 1
            # no normalisation: instance norm before the global pooling below would make every pooled feature
            # (nearly) the same constant for every sample - the mean of LeakyReLU(zero-mean, unit-variance map) -
            # and leave the discriminator blind to the domain (measured: codes differing 3x in scale and by +2 in
            # offset gave pooled features differing by 0.003), so the content adversarial term did nothing
            layers.append(_ConvBlock(cin, ch, 3, stride, 1, "none", "lrelu", padding_mode="zeros"))
            cin = ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(ch, 1, 1)

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.features(content), 1)).flatten()


class TranslatorGenerators(nn.Module):
    """The generator side: shared content encoder, per-domain style encoders and decoders.

    This is the part that is EMA-averaged, checkpointed for inference and used by translation.
    """

    def __init__(self, in_channels: int, cfg: NetworkConfig):
        super().__init__()
        self.in_channels = in_channels
        self.cfg = cfg
        self.content_encoder = ContentEncoder(in_channels, cfg)
        self.style_encoders = nn.ModuleDict({d: StyleEncoder(in_channels, cfg) for d in DOMAINS})
        self.decoders = nn.ModuleDict({d: AdaINDecoder(in_channels, cfg) for d in DOMAINS})
        self.apply(_init_conv)
        stems = self.content_encoder.stems
        if stems is not None:
            # both domains' first layers start identical: training starts from the shared encoder (which maps each
            # structure to the same code whatever the modality only as far as their local patterns agree) and
            # lets the two stems drift apart only as far as the domains' intensities need
            stems[DOMAINS[1]].load_state_dict(stems[DOMAINS[0]].state_dict())

    def encode(self, x: torch.Tensor, domain: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C, H, W)`` with H, W multiples of ``2**n_down`` -> (content code, style code)."""
        return self.content_encoder(x, domain), self.style_encoders[domain](x)

    def decode(self, content: torch.Tensor, style: torch.Tensor, domain: str) -> torch.Tensor:
        return self.decoders[domain](content, style)

    def translate(self, x: torch.Tensor, style: torch.Tensor, to_domain: str) -> torch.Tensor:
        """Any-size ``(N, C, H, W)`` -> ``(N, C, H, W)`` in ``to_domain`` with the given style codes ``(N, d)``."""
        xp, size = pad_to_multiple(x, self.cfg.spatial_multiple)
        from_domain = DOMAINS[1 - DOMAINS.index(to_domain)]
        return crop_to(self.decode(self.content_encoder(xp, from_domain), style, to_domain), size)


class TranslatorDiscriminators(nn.Module):
    """Per-domain multi-scale image discriminators and the content discriminator (training only)."""

    def __init__(self, in_channels: int, cfg: NetworkConfig, slice_size: tuple[int, int]):
        super().__init__()
        m = cfg.spatial_multiple
        self.image = nn.ModuleDict({d: MultiScaleDiscriminator(in_channels, cfg, slice_size) for d in DOMAINS})
        self.content = ContentDiscriminator(cfg, (slice_size[0] // m, slice_size[1] // m))
        self.apply(_init_conv)


def build_generators(in_channels: int, cfg: NetworkConfig) -> TranslatorGenerators:
    cfg.validate()
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    return TranslatorGenerators(in_channels, cfg)


def build_discriminators(in_channels: int, cfg: NetworkConfig, slice_size: tuple[int, int]) -> TranslatorDiscriminators:
    """``slice_size`` is the training crop size (already a multiple of ``cfg.spatial_multiple``)."""
    cfg.validate()
    return TranslatorDiscriminators(in_channels, cfg, (int(slice_size[0]), int(slice_size[1])))


def padded_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """``size`` rounded up to ``multiple`` on each axis."""
    return tuple(int(math.ceil(s / multiple) * multiple) for s in size)  # type: ignore[return-value]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad the last two dims of ``x`` (N, C, H, W) up to ``multiple``; returns (padded, original (H, W)).

    Padding is split evenly between both sides so the content stays centred. Replicate (not zero) padding: a zero
    band would look like an edge of the body to the encoder.
    """
    h, w = x.shape[-2:]
    ph, pw = padded_size((h, w), multiple)
    if (ph, pw) == (h, w):
        return x, (h, w)
    top, left = (ph - h) // 2, (pw - w) // 2
    return F.pad(x, (left, pw - w - left, top, ph - h - top), mode="replicate"), (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: centre-crop the last two dims to ``size``."""
    h, w = size
    ph, pw = x.shape[-2:]
    if (ph, pw) == (h, w):
        return x
    top, left = (ph - h) // 2, (pw - w) // 2
    return x[..., top:top + h, left:left + w]
