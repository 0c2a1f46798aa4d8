"""Convert CHAOS T2-SPIR MR + BTCV CT into a UDA-ready nnU-Net raw dataset (same as ``glua_convert_abdomen``).

Usage: python dataset_conversion/convert_abdomen.py --chaos /data/CHAOS_Train_Sets --btcv /data/BTCV \
           --direction MR2CT -d 703 [--upper-bound-id 704]
Run with --help for all options; the logic lives in :mod:`nnunet_glua.conversion.abdomen`.
"""
from nnunet_glua.conversion.abdomen import main

if __name__ == "__main__":
    main()
