"""The facts of a UDA dataset, read from the ``"glua"`` block of its raw ``dataset.json``.

A UDA-ready nnU-Net raw dataset (written by the ``glua_convert_*`` converters) looks like::

    $nnUNet_raw/DatasetXXX_Name/
        imagesTr/{case}_0000.nii.gz     labelled SOURCE domain (nnU-Net's training set)
        labelsTr/{case}.nii.gz
        imagesTargetTr/{case}_0000.nii.gz   unlabelled TARGET training images (no labels anywhere)
        imagesTs/{case}_0000.nii.gz     TARGET test images
        labelsTs/{case}.nii.gz          TARGET test labels, for evaluation only
        dataset.json                    nnU-Net keys + "glua": {...}

:func:`load_uda_info` is the one place other modules get these facts from. It reads ``dataset.json`` only;
:meth:`UDADatasetInfo.target_image_files` lists (and checks) the image files of a split. Nothing here ever
reads a label file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nnunet_glua.errors import PathError
from nnunet_glua.json_io import read_json
from nnunet_glua.nnunet_io import PREPROCESSED, RAW, dataset_id_from_name, image_cases, nnunet_folder

#: key of the plugin's block in ``dataset.json``
GLUA_KEY = "glua"
#: versions of the ``"glua"`` block this code understands
SUPPORTED_FORMAT_VERSIONS = (1,)
#: values of ``glua.role``: a dataset to adapt, or the target-supervised upper bound (trained on target labels)
ROLES = ("adaptation", "target_supervised")
#: the split names of the target domain: unlabelled training images and test images
TARGET_SPLITS = ("train", "test")

_REQUIRED_KEYS = (
    "format_version",
    "direction",
    "source_modality",
    "target_modality",
    "role",
    "unlabelled_target_folder",
    "target_test_images_folder",
    "target_test_labels_folder",
)


class UDADatasetError(PathError):
    """A UDA dataset is missing, incomplete or inconsistent. ``path`` names the file or folder at fault."""


@dataclass(frozen=True)
class UDADatasetInfo:
    """Everything the plugin needs to know about a UDA dataset (paths are absolute).

    ``target_training_cases`` and ``target_test_cases`` are the case identifiers (file names without the
    ``_0000`` channel suffix and file ending) of the unlabelled target training images and the target test
    images; they are disjoint (checked on load).
    """

    dataset_name: str
    dataset_id: int
    raw_folder: Path
    preprocessed_folder: Path
    dataset_json: dict = field(repr=False)
    direction: str
    source_modality: str
    target_modality: str
    role: str
    unlabelled_target_folder: Path
    test_images_folder: Path
    test_labels_folder: Path
    target_training_cases: tuple[str, ...]
    target_test_cases: tuple[str, ...]

    @property
    def file_ending(self) -> str:
        """Image file ending of the dataset, e.g. ``.nii.gz``."""
        return self.dataset_json["file_ending"]

    @property
    def num_channels(self) -> int:
        """Number of input channels (image files per case)."""
        return len(self.dataset_json["channel_names"])

    @property
    def glua(self) -> dict:
        """The raw ``"glua"`` block of ``dataset.json``."""
        return self.dataset_json[GLUA_KEY]

    def images_folder(self, split: str) -> Path:
        """Folder with the target images of ``split`` (``"train"``: unlabelled training, ``"test"``: test)."""
        _check_split(split)
        return self.unlabelled_target_folder if split == "train" else self.test_images_folder

    def cases(self, split: str) -> tuple[str, ...]:
        """Case identifiers of the target ``split``."""
        _check_split(split)
        return self.target_training_cases if split == "train" else self.target_test_cases

    def target_image_files(self, split: str) -> dict[str, list[Path]]:
        """Map each case of target ``split`` to its image files, one per channel, in channel order.

        Checks that the folder exists and is not empty, that every listed case has all its channel files and
        that the folder holds no image of an unlisted case (an unlisted file may be a test image copied to the
        wrong place; training on it would leak). Never looks at any label folder.
        """
        folder = self.images_folder(split)
        if not folder.is_dir():
            raise UDADatasetError(folder, f"the target {split} image folder does not exist. Re-run the dataset "
                                          f"converter, or create it with files named {{case}}_0000{self.file_ending}")
        found = image_cases(folder, self.file_ending)
        if not found:
            raise UDADatasetError(folder, f"the target {split} image folder holds no '*_0000{self.file_ending}' "
                                          f"image: there is nothing to preprocess. Put the target images there "
                                          f"(re-run the dataset converter)")
        listed = self.cases(split)
        unlisted = sorted(set(found) - set(listed))
        if unlisted:
            key = "target_training_cases" if split == "train" else "target_test_cases"
            raise UDADatasetError(folder, f"holds images of cases that dataset.json's glua.{key} does not list: "
                                          f"{unlisted[:10]}{' ...' if len(unlisted) > 10 else ''}. Add them to "
                                          f"that list or move the files away")
        files: dict[str, list[Path]] = {}
        for case in listed:
            expected = [folder / f"{case}_{c:04d}{self.file_ending}" for c in range(self.num_channels)]
            missing = [p for p in expected if not p.is_file()]
            if missing:
                raise UDADatasetError(missing[0], f"image file of case '{case}' is missing (expected "
                                                  f"{self.num_channels} channel file(s) per case)")
            files[case] = expected
        return files


def _check_split(split: str) -> None:
    if split not in TARGET_SPLITS:
        raise ValueError(f"unknown target split '{split}'; use one of {TARGET_SPLITS}")


def resolve_dataset_name(dataset: "int | str") -> str:
    """nnU-Net's dataset name (``DatasetXXX_Name``) for an id (``701``, ``"701"``) or a name, with a clear error."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return str(maybe_convert_to_dataset_name(dataset))
    except (RuntimeError, ValueError) as e:
        raise UDADatasetError(None, f"unknown dataset {dataset!r}: {e}") from None


def _read_dataset_json(raw_folder: Path, preprocessed_folder: Path) -> tuple[dict, Path]:
    # The raw dataset.json is authoritative; nnU-Net copies it verbatim into the preprocessed folder, so that
    # copy serves on machines that only hold preprocessed data.
    for candidate in (raw_folder / "dataset.json", preprocessed_folder / "dataset.json"):
        if candidate.is_file():
            return read_json(candidate, UDADatasetError, "fix or regenerate it with the dataset converter"), candidate
    raise UDADatasetError(raw_folder, "no dataset.json found (looked in the raw and the preprocessed folder). "
                                      "Convert the dataset first (glua_convert_* commands)")


def parse_glua_block(dataset_json: Mapping[str, Any], json_path: "Path | None" = None) -> dict:
    """Return the validated ``"glua"`` block of a ``dataset.json`` dictionary."""
    block = dataset_json.get(GLUA_KEY)
    if block is None:
        raise UDADatasetError(json_path, f"dataset.json has no '{GLUA_KEY}' block, so it is not a UDA dataset: "
                                         f"nothing says which images are the unlabelled target domain. Convert the "
                                         f"data with a glua_convert_* command (or glua_make_phantom), which writes it")
    if not isinstance(block, dict):
        raise UDADatasetError(json_path, f"dataset.json's '{GLUA_KEY}' entry must be an object, got "
                                         f"{type(block).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in block]
    if missing:
        raise UDADatasetError(json_path, f"dataset.json's '{GLUA_KEY}' block lacks the key(s) {missing}. "
                                         f"Re-run the dataset converter")
    if block["format_version"] not in SUPPORTED_FORMAT_VERSIONS:
        raise UDADatasetError(json_path, f"glua.format_version {block['format_version']!r} is not supported "
                                         f"(this version reads {SUPPORTED_FORMAT_VERSIONS}); update nnunet-glua "
                                         f"or re-run the converter")
    if block["role"] not in ROLES:
        raise UDADatasetError(json_path, f"glua.role {block['role']!r} is not one of {ROLES}")
    for key in ("target_training_cases", "target_test_cases"):
        if key in block and not (isinstance(block[key], list) and all(isinstance(c, str) for c in block[key])):
            raise UDADatasetError(json_path, f"glua.{key} must be a list of case identifiers (strings)")
    for key in ("file_ending", "channel_names"):
        if key not in dataset_json:
            raise UDADatasetError(json_path, f"dataset.json lacks nnU-Net's '{key}' entry")
    return block


def _sub_folder(raw_folder: Path, value: Any, key: str, json_path: Path) -> Path:
    if not isinstance(value, str) or not value or Path(value).is_absolute() or ".." in Path(value).parts:
        raise UDADatasetError(json_path, f"glua.{key} must be a folder name inside the raw dataset folder, "
                                         f"got {value!r}")
    return raw_folder / value


def load_uda_info(dataset: "int | str") -> UDADatasetInfo:
    """Read the UDA facts of ``dataset`` (id or ``DatasetXXX_Name``) from its ``dataset.json``.

    Case lists come from ``glua.target_training_cases`` / ``glua.target_test_cases``; where the block does not
    list them, they are discovered from the image folders. Raises :class:`UDADatasetError` for an unknown
    dataset, a missing or malformed ``"glua"`` block, or target training ids that are also test ids.
    """
    raw_root = nnunet_folder(RAW, UDADatasetError).resolve()
    preprocessed_root = nnunet_folder(PREPROCESSED, UDADatasetError).resolve()
    name = resolve_dataset_name(dataset)
    raw_folder = raw_root / name
    preprocessed_folder = preprocessed_root / name
    if not raw_folder.is_dir() and not preprocessed_folder.is_dir():
        raise UDADatasetError(raw_folder, f"dataset {name} is neither in nnUNet_raw ({raw_root}) nor in "
                                          f"nnUNet_preprocessed ({preprocessed_root})")
    dataset_json, json_path = _read_dataset_json(raw_folder, preprocessed_folder)
    block = parse_glua_block(dataset_json, json_path)

    unlabelled = _sub_folder(raw_folder, block["unlabelled_target_folder"], "unlabelled_target_folder", json_path)
    test_images = _sub_folder(raw_folder, block["target_test_images_folder"], "target_test_images_folder",
                              json_path)
    test_labels = _sub_folder(raw_folder, block["target_test_labels_folder"], "target_test_labels_folder",
                              json_path)
    if unlabelled.name in ("imagesTr", "labelsTr") or test_labels.name in ("imagesTr", "labelsTr"):
        raise UDADatasetError(json_path, "the unlabelled target folder and the target test label folder must not "
                                         "be nnU-Net's imagesTr/labelsTr (they would become labelled training data)")

    def listed_or_found(key: str, folder: Path) -> tuple[str, ...]:
        if key in block:
            return tuple(block[key])
        return tuple(image_cases(folder, dataset_json["file_ending"])) if folder.is_dir() else ()

    train_cases = listed_or_found("target_training_cases", unlabelled)
    test_cases = listed_or_found("target_test_cases", test_images)
    for key, cases in (("target_training_cases", train_cases), ("target_test_cases", test_cases)):
        if len(set(cases)) != len(cases):
            raise UDADatasetError(json_path, f"glua.{key} lists a case more than once")
    leaked = sorted(set(train_cases) & set(test_cases))
    if leaked:
        raise UDADatasetError(json_path, f"target cases {leaked} are both unlabelled training and test cases; "
                                         f"a test case must never be used for training. Fix the split")

    return UDADatasetInfo(
        dataset_name=name,
        dataset_id=dataset_id_from_name(name),
        raw_folder=raw_folder,
        preprocessed_folder=preprocessed_folder,
        dataset_json=dataset_json,
        direction=str(block["direction"]),
        source_modality=str(block["source_modality"]),
        target_modality=str(block["target_modality"]),
        role=block["role"],
        unlabelled_target_folder=unlabelled,
        test_images_folder=test_images,
        test_labels_folder=test_labels,
        target_training_cases=train_cases,
        target_test_cases=test_cases,
    )
