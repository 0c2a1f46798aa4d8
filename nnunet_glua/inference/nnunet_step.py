"""The nnU-Net step of a run: segment the harmonised canonical images of a work folder in one predictor run.

:data:`PredictFn` is what the run calls; :class:`NnUNetPrediction` is the default one (``nnUNetPredictor`` with the
model's folds as an ensemble). Tests and other back ends pass their own. :func:`resolve_device` picks the torch
device.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunet_glua.inference.errors import PredictionError
from nnunet_glua.inference.trained_model import TrainedModel

__all__ = ["DEVICES", "NnUNetPrediction", "PredictFn", "resolve_device"]

#: devices a run can predict on (a GPU is selected with CUDA_VISIBLE_DEVICES, not by name)
DEVICES = ("cuda", "cpu", "mps")

#: ``predict_fn(input_folder, output_folder, case_ids)``: segment ``{case}_0000{ending}`` of ``input_folder`` for each
#: case id and write ``{case}{ending}`` (integer labels, same grid as the input) into ``output_folder``.
PredictFn = Callable[[Path, Path, Sequence[str]], None]


def resolve_device(device: str | None) -> str:
    """``"cuda"``, ``"cpu"`` or ``"mps"``; ``None`` picks CUDA if visible, else MPS, else CPU."""
    import torch

    if device is None:
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    device = str(device).lower()
    if device not in DEVICES:
        raise PredictionError(None, f"device must be one of {DEVICES}, got {device!r} (select a GPU with "
                                    "CUDA_VISIBLE_DEVICES, not with the device name)")
    if device == "cuda" and not torch.cuda.is_available():
        raise PredictionError(None, "device 'cuda' requested but no CUDA GPU is visible; use -device cpu")
    return device


@dataclass(frozen=True)
class NnUNetPrediction:
    """The default :data:`PredictFn`: one ``nnUNetPredictor`` run with the model's folds as an ensemble.

    ``num_processes_preprocessing`` / ``num_processes_export`` are nnU-Net's ``-npp`` / ``-nps``; both 0 runs
    nnU-Net's single-process path (``predict_from_files_sequential``), as ``nnUNetv2_predict`` does.
    """

    model: TrainedModel
    device: str
    step_size: float = 0.5
    use_mirroring: bool = True
    num_processes_preprocessing: int = 3
    num_processes_export: int = 3

    def __call__(self, input_folder: Path, output_folder: Path, case_ids: Sequence[str]) -> None:
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        from nnunet_glua.paths import ensure_trainer_folder_registered

        # the checkpoints name the trainer class (e.g. GLUATrainer); nnU-Net finds the plugin's through this variable
        ensure_trainer_folder_registered()
        predictor = nnUNetPredictor(
            tile_step_size=self.step_size,
            use_gaussian=True,
            use_mirroring=self.use_mirroring,
            perform_everything_on_device=self.device == "cuda",
            device=torch.device(self.device),
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=True,
        )
        predictor.initialize_from_trained_model_folder(
            str(self.model.folder), use_folds=tuple(self.model.folds), checkpoint_name=self.model.checkpoint
        )
        ending = self.model.dataset_json["file_ending"]
        inputs = [[str(input_folder / f"{case}_0000{ending}")] for case in case_ids]
        outputs = [str(output_folder / case) for case in case_ids]
        if self.num_processes_preprocessing == 0 and self.num_processes_export == 0:
            predictor.predict_from_files_sequential(inputs, outputs, save_probabilities=False, overwrite=True)
        else:
            predictor.predict_from_files(
                inputs, outputs, save_probabilities=False, overwrite=True,
                num_processes_preprocessing=self.num_processes_preprocessing,
                num_processes_segmentation_export=self.num_processes_export,
            )
