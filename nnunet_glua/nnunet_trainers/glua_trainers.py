# Shim module for nnU-Net's trainer lookup (nnUNet_extTrainer). nnU-Net imports every module of this folder as a
# top-level module and evicts it afterwards, so the classes must be defined in the package and only re-exported here.
from nnunet_glua.training.glua_trainer import GLUATrainer  # noqa: F401
from nnunet_glua.training.short_schedule import (SourceOnlyTrainer, SourceOnlyTrainer_Demo,  # noqa: F401
                                                 SourceOnlyTrainer_DemoFineTune, SourceOnlyTrainer_Short,
                                                 SourceOnlyTrainer_StructureShift,
                                                 SourceOnlyTrainer_StructureShift_Demo,
                                                 SourceOnlyTrainer_StructureShift_DemoFineTune,
                                                 SourceOnlyTrainer_StructureShift_Short)
from nnunet_glua.training.variants import *  # noqa: F401,F403
