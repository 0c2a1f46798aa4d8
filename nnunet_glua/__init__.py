"""nnunet-glua: unsupervised cross-modality domain adaptation for nnU-Net v2 (Global-Local Union Alignment)."""

__version__ = "0.1.0"
