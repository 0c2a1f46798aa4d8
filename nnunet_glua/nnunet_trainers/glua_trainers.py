# Shim module for nnU-Net's trainer lookup (nnUNet_extTrainer). nnU-Net imports every module of this folder as a
# top-level module and evicts it afterwards, so the classes must be defined in the package and only re-exported here.
from nnunet_glua.training.variants import *  # noqa: F401,F403
