"""GLUATrainer variants: ablations and short schedules, each a subclass that changes class attributes only.

| trainer | translation (global) | feature alignment (local) |
| --- | --- | --- |
| ``GLUATrainer`` | yes | top ``mask_ratio`` of valid locations |
| ``GLUATrainer_NoLocalMask`` | yes | every valid location (global feature alignment) |
| ``GLUATrainer_StyleOnly`` | yes | off |
| ``GLUATrainer_FeatureOnly`` | off | top ``mask_ratio`` |
| ``GLUATrainer_SoftMask`` | yes | every valid location, weighted by its gap |
| ``GLUATrainer_Mask10`` / ``_Mask50`` | yes | top 10 % / 50 % |
| ``GLUATrainer_NoStructureShift`` | yes, without the structure-wise intensity shift | top ``mask_ratio`` |

Every variant but ``GLUATrainer_NoStructureShift`` keeps ``GLUATrainer``'s structure-wise intensity shift of the
source batch (:mod:`nnunet_glua.training.structure_intensity`); ``SourceOnlyTrainer_StructureShift`` is source-only
nnU-Net with that shift alone.

``*_Short`` variants run ``num_epochs_short`` epochs of ``num_iterations_short`` steps: for tests, CPU demos and
benchmarks where every row must use the same schedule (:class:`SourceOnlyTrainer_Short` is the source-only row).
``*_Demo`` variants use the schedule of the main demo's first stage (30 epochs of 25 steps, from scratch;
:class:`SourceOnlyTrainer_Demo` is the demo's source-only model). ``*_DemoFineTune`` variants are the demo's second
stage: half as many epochs, started from the source-only ``_Demo`` model with nnU-Net's ``-pretrained_weights``; the
demo trains GLUA as :class:`GLUATrainer_DemoFineTune`. ``glua_benchmark --schedule _Demo --fine-tune-schedule
_DemoFineTune`` reproduces the demo's rows and adds the ablations.
"""
from __future__ import annotations

from nnunet_glua.style.config import PRESETS
from nnunet_glua.training.glua_trainer import GLUATrainer
from nnunet_glua.training.short_schedule import DemoFineTuneSchedule, DemoSchedule, ShortSchedule

__all__ = ["GLUATrainer_NoLocalMask", "GLUATrainer_StyleOnly", "GLUATrainer_FeatureOnly", "GLUATrainer_SoftMask",
           "GLUATrainer_Mask10", "GLUATrainer_Mask50", "GLUATrainer_Short", "GLUATrainer_NoLocalMask_Short",
           "GLUATrainer_StyleOnly_Short", "GLUATrainer_FeatureOnly_Short", "GLUATrainer_Demo",
           "GLUATrainer_NoLocalMask_Demo", "GLUATrainer_StyleOnly_Demo", "GLUATrainer_FeatureOnly_Demo",
           "GLUATrainer_NoStructureShift", "GLUATrainer_NoStructureShift_Short", "GLUATrainer_NoStructureShift_Demo",
           "GLUATrainer_DemoFineTune", "GLUATrainer_NoLocalMask_DemoFineTune", "GLUATrainer_StyleOnly_DemoFineTune",
           "GLUATrainer_FeatureOnly_DemoFineTune", "GLUATrainer_NoStructureShift_DemoFineTune"]


class GLUATrainer_NoLocalMask(GLUATrainer):
    mask_ratio = 1.0


class GLUATrainer_StyleOnly(GLUATrainer):
    use_feature_alignment = False


class GLUATrainer_FeatureOnly(GLUATrainer):
    use_translation = False


class GLUATrainer_SoftMask(GLUATrainer):
    soft_mask = True


class GLUATrainer_Mask10(GLUATrainer):
    mask_ratio = 0.1


class GLUATrainer_Mask50(GLUATrainer):
    mask_ratio = 0.5


class GLUATrainer_NoStructureShift(GLUATrainer):
    """The published method alone: translation and local feature alignment, without our structure-wise
    intensity shift."""
    structure_shift = 0.0


# A translator small enough to train on a CPU in minutes (measured on the cardiac phantom: docs/style_tuning.md).
CPU_TRANSLATOR = PRESETS["cpu_demo"]


class ShortAlignment:
    """Mixin for the ``*_Short`` GLUA variants: the CPU-sized translator, trained for 200 iterations."""
    translator_config_overrides = CPU_TRANSLATOR
    translator_iterations = 200


class GLUATrainer_Short(ShortSchedule, ShortAlignment, GLUATrainer):
    pass


class GLUATrainer_NoLocalMask_Short(ShortSchedule, ShortAlignment, GLUATrainer_NoLocalMask):
    pass


class GLUATrainer_StyleOnly_Short(ShortSchedule, ShortAlignment, GLUATrainer_StyleOnly):
    pass


class GLUATrainer_NoStructureShift_Short(ShortSchedule, ShortAlignment, GLUATrainer_NoStructureShift):
    pass


class GLUATrainer_FeatureOnly_Short(ShortSchedule, GLUATrainer_FeatureOnly):
    pass


class DemoAlignment:
    """Mixin for the ``*_Demo`` and ``*_DemoFineTune`` GLUA variants: the CPU-sized translator, trained for 600
    iterations, and a target batch of a quarter of the source batch, so that the main demo's trainings fit its 20
    CPU minutes (measured: docs/benchmarks.md)."""
    translator_config_overrides = CPU_TRANSLATOR
    translator_iterations = 600
    target_batch_fraction = 0.25


class GLUATrainer_Demo(DemoSchedule, DemoAlignment, GLUATrainer):
    """GLUATrainer from scratch with the schedule of the main demo's first stage (30 x 25 steps) and the CPU-sized
    translator. The demo itself trains only source-only in that stage and GLUA as
    :class:`GLUATrainer_DemoFineTune`."""


class GLUATrainer_NoLocalMask_Demo(DemoSchedule, DemoAlignment, GLUATrainer_NoLocalMask):
    pass


class GLUATrainer_StyleOnly_Demo(DemoSchedule, DemoAlignment, GLUATrainer_StyleOnly):
    pass


class GLUATrainer_FeatureOnly_Demo(DemoSchedule, DemoAlignment, GLUATrainer_FeatureOnly):
    pass


class GLUATrainer_NoStructureShift_Demo(DemoSchedule, DemoAlignment, GLUATrainer_NoStructureShift):
    pass


class GLUATrainer_DemoFineTune(DemoFineTuneSchedule, DemoAlignment, GLUATrainer):
    """GLUATrainer as the main demo runs it: started from the source-only ``_Demo`` model, half the schedule."""


class GLUATrainer_NoLocalMask_DemoFineTune(DemoFineTuneSchedule, DemoAlignment, GLUATrainer_NoLocalMask):
    pass


class GLUATrainer_StyleOnly_DemoFineTune(DemoFineTuneSchedule, DemoAlignment, GLUATrainer_StyleOnly):
    pass


class GLUATrainer_FeatureOnly_DemoFineTune(DemoFineTuneSchedule, DemoAlignment, GLUATrainer_FeatureOnly):
    pass


class GLUATrainer_NoStructureShift_DemoFineTune(DemoFineTuneSchedule, DemoAlignment, GLUATrainer_NoStructureShift):
    pass
