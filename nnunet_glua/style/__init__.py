"""Global alignment: the disentangled 2D style-transfer translator (source <-> target) and its style bank.

Where things are:

* :mod:`~nnunet_glua.style.config`        hyper-parameters and the reasons for their defaults
* :mod:`~nnunet_glua.style.networks`      content/style encoders, AdaIN decoders, image and content discriminators
* :mod:`~nnunet_glua.style.losses`        the objective (reconstruction, cross-cycle, latent, adversarial terms)
* :mod:`~nnunet_glua.style.slice_sampler` 2D slices from nnU-Net preprocessed folders
* :mod:`~nnunet_glua.style.trainer`       :func:`train_translator` (training loop, checkpoints, resume, previews)
* :mod:`~nnunet_glua.style.style_bank`    k-means style bank (:mod:`~nnunet_glua.style.kmeans`)
* :mod:`~nnunet_glua.style.translate`     :class:`Translator` - the API the segmentation trainer calls
* :mod:`~nnunet_glua.style.integration`   nnU-Net folders, :func:`ensure_translator`, :func:`load_translator_for`
* :mod:`~nnunet_glua.style.volume_export` whole-volume translation (``glua_translate``)
* :mod:`~nnunet_glua.style.report`        quality checks (``glua_style_report``)
* :mod:`~nnunet_glua.style.benchmark`     throughput (``python -m nnunet_glua.style.benchmark``)
* :mod:`~nnunet_glua.style.gpu_check`     CUDA checks CI cannot run (``python -m nnunet_glua.style.gpu_check``)
* :mod:`~nnunet_glua.style.synthetic`     tiny synthetic preprocessed folders and a tiny config (tests, smoke runs)
"""
from nnunet_glua.style.config import AugmentationConfig, LossWeights, NetworkConfig, TranslatorConfig
from nnunet_glua.style.identity import TranslatorIdentity, TranslatorMismatchError
from nnunet_glua.style.style_bank import StyleBank
from nnunet_glua.style.trainer import TrainingResult, train_translator
from nnunet_glua.style.translate import Translator

__all__ = ["AugmentationConfig", "LossWeights", "NetworkConfig", "TranslatorConfig", "TranslatorIdentity",
           "TranslatorMismatchError", "StyleBank", "TrainingResult", "train_translator", "Translator"]
