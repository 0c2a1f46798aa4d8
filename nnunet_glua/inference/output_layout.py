"""Names of what a prediction run writes into its output folder.

``{output}/{case}.nii.gz`` per scan, ``{output}/predictions.json`` (the run record), the work folder
``{output}/glua_intermediate`` (harmonised canonical images and canonical predictions) and the lock file that
keeps a second run from writing into the same folder.
"""
from __future__ import annotations

__all__ = ["LOCK_NAME", "OUTPUT_SUFFIX", "PREDICTIONS_JSON", "WORK_FOLDER_NAME"]

#: suffix of the written segmentations
OUTPUT_SUFFIX = ".nii.gz"
#: work folder inside the output folder (harmonised inputs and canonical predictions)
WORK_FOLDER_NAME = "glua_intermediate"
#: run record inside the output folder
PREDICTIONS_JSON = "predictions.json"
#: lock file inside the output folder: one run at a time may write there
LOCK_NAME = ".glua_predict_scans.lock"
