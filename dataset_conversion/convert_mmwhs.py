"""Convert MMWHS into a UDA-ready nnU-Net raw dataset (same as the ``glua_convert_mmwhs`` command).

Usage: python dataset_conversion/convert_mmwhs.py --src /data/MMWHS --direction MR2CT -d 701 [--upper-bound-id 702]
Run with --help for all options; the logic lives in :mod:`nnunet_glua.conversion.mmwhs`.
"""
from nnunet_glua.conversion.mmwhs import main

if __name__ == "__main__":
    main()
