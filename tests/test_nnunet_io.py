"""The shared helpers every stage uses: nnU-Net folder and file conventions, worker pools, path-naming errors."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from nnunet_glua import nnunet_io
from nnunet_glua.json_io import read_json
from nnunet_glua.conversion.errors import ConversionError
from nnunet_glua.data.uda_dataset_info import UDADatasetError
from nnunet_glua.errors import PathError
from nnunet_glua.experiments.errors import BenchmarkError
from nnunet_glua.evaluation.evaluate import EvaluationError
from nnunet_glua.inference.errors import PredictionError
from nnunet_glua.parallel import default_num_processes, run_jobs


@pytest.mark.parametrize("cls", [PathError, ConversionError, UDADatasetError, EvaluationError, BenchmarkError,
                                 PredictionError])
def test_errors_name_the_path_and_survive_pickling(cls):
    # worker processes send their errors to the parent by pickling them
    error = cls(Path("/data/ct_1001.nii.gz"), "file is truncated; re-download it")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is cls and isinstance(again, ValueError)
    assert (again.path, again.problem) == ("/data/ct_1001.nii.gz", "file is truncated; re-download it")
    assert str(again) == "/data/ct_1001.nii.gz: file is truncated; re-download it"
    assert str(cls(None, "nnUNet_raw is not set")) == "nnUNet_raw is not set"


def test_run_jobs_keeps_job_order_and_brings_a_worker_error_back_whole(tmp_path):
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.json")
        files[-1].write_text(json.dumps({"i": i}))
    seen = []
    results = run_jobs(read_json, files, num_processes=2, desc="test",
                       on_result=lambda r, bar: seen.append(r["i"]))
    assert results == [{"i": 0}, {"i": 1}, {"i": 2}] and sorted(seen) == [0, 1, 2]
    assert run_jobs(read_json, files[:1], num_processes=1, desc="test") == [{"i": 0}]

    missing = tmp_path / "missing.json"
    with pytest.raises(PathError, match="cannot be read as JSON") as info:
        run_jobs(read_json, [files[0], missing], num_processes=2, desc="test")
    assert info.value.path == str(missing)


def test_default_num_processes_follows_nnunet_variable(monkeypatch):
    monkeypatch.setenv("nnUNet_def_n_proc", "3")
    assert default_num_processes(cap=8) == 3
    monkeypatch.setenv("nnUNet_def_n_proc", "0")
    assert default_num_processes(cap=8) == 1
    monkeypatch.delenv("nnUNet_def_n_proc")
    assert default_num_processes(cap=1) == 1
    assert default_num_processes(cap=64) == max(1, min(64, os.cpu_count() or 1))
    monkeypatch.setenv("nnUNet_def_n_proc", "four")
    with pytest.raises(ValueError, match="nnUNet_def_n_proc must be a whole number.*'four'"):
        default_num_processes(cap=8)


def test_nnunet_folder_is_read_when_called_and_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    assert nnunet_io.nnunet_folder("nnUNet_results") == tmp_path
    monkeypatch.setenv("nnUNet_results", "")
    with pytest.raises(PredictionError, match="nnUNet_results is not set; set it to nnU-Net's results folder") as info:
        nnunet_io.nnunet_folder("nnUNet_results", PredictionError)
    assert info.value.path is None
    with pytest.raises(BenchmarkError, match="nnUNet_results is not set; pass --out"):
        nnunet_io.nnunet_folder("nnUNet_results", BenchmarkError, advice="pass --out")


def test_dataset_lookup_by_id_prefix(tmp_path):
    for name in ("Dataset001_A", "Dataset001_B", "Dataset0011_C", "Dataset010_D"):
        (tmp_path / name).mkdir()
    (tmp_path / "Dataset001_file").write_text("not a folder")
    assert [p.name for p in nnunet_io.dataset_folders_with_id(tmp_path, 1)] == ["Dataset001_A", "Dataset001_B"]
    assert nnunet_io.dataset_folders_with_id(tmp_path, 2) == []
    assert nnunet_io.dataset_folders_with_id(tmp_path / "absent", 1) == []
    assert nnunet_io.dataset_id_from_name("Dataset701_MMWHS_MR2CT") == 701
    for bad in ("MMWHS", "Dataset_X", "dataset701_X"):
        with pytest.raises(ValueError, match="not an nnU-Net dataset name"):
            nnunet_io.dataset_id_from_name(bad)


def test_case_listing_follows_nnunet_file_names(tmp_path):
    for name in ("ct_1_0000.nii.gz", "ct_1_0001.nii.gz", "mr_2_0000.nii.gz", ".partial-ab-x_0000.nii.gz",
                 "notes_0000.txt", "nochannel.nii.gz", "ct_3_00.nii.gz"):
        (tmp_path / name).write_text("")
    (tmp_path / "folder_0000.nii.gz").mkdir()
    assert nnunet_io.image_cases(tmp_path, ".nii.gz") == ["ct_1", "mr_2"]
    labels = nnunet_io.label_files(tmp_path, ".nii.gz")
    assert list(labels) == ["ct_1_0000", "ct_1_0001", "ct_3_00", "mr_2_0000", "nochannel"]
    assert labels["nochannel"] == tmp_path / "nochannel.nii.gz"


def test_json_and_plans_errors_name_the_file_and_what_exists(tmp_path):
    broken = tmp_path / "dataset.json"
    broken.write_text("{not json")
    with pytest.raises(EvaluationError, match="cannot be read as JSON .*; regenerate it") as info:
        read_json(broken, EvaluationError, advice="regenerate it")
    assert info.value.path == str(broken)

    plans = tmp_path / "nnUNetPlans.json"
    plans.write_text(json.dumps({"plans_name": "nnUNetPlans", "configurations": {"3d_fullres": {}, "2d": {}}}))
    assert set(nnunet_io.load_plans(plans, "nnUNetPlans", "2d")["configurations"]) == {"2d", "3d_fullres"}
    with pytest.raises(UDADatasetError, match=r"'3d_lowres' is not in plans 'nnUNetPlans'\. Available "
                                              r"configurations: \['2d', '3d_fullres'\]"):
        nnunet_io.load_plans(plans, "nnUNetPlans", "3d_lowres", UDADatasetError)
