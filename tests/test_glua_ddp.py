"""GLUATrainer's DDP logic with two CPU ranks over gloo: the network and the feature discriminators stay in sync,
a NaN on one rank stops both ranks together, and each rank resumes its own random streams (nnU-Net's own DDP
launcher needs GPUs; this drives the trainer directly, the way nnU-Net's launcher does after init_process_group)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tiny_dataset import plan_and_preprocess, write_tiny_uda_dataset

DATASET_ID = 975


def _ddp_worker(rank: int, world_size: int, init_file: str, dataset_name: str, out_dir: str) -> None:
    os.environ["nnUNet_n_proc_DA"] = "0"
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as nnunet_trainer_module
        from torch.nn.parallel import DistributedDataParallel

        from nnunet_glua.training.glua_components import AdversarialDivergenceError
        from nnunet_glua.training.variants import GLUATrainer_FeatureOnly_Short

        # nnU-Net hard-codes a CUDA device id for DDP; CPU modules take none
        nnunet_trainer_module.DDP = lambda module, device_ids=None: DistributedDataParallel(module)
        pre = Path(os.environ["nnUNet_preprocessed"]) / dataset_name
        plans = json.loads((pre / "nnUNetPlans.json").read_text())
        plans["continue_training"] = False
        dataset_json = json.loads((pre / "dataset.json").read_text())
        torch.manual_seed(rank)  # different data and init per rank: DDP must still keep them in sync
        trainer = GLUATrainer_FeatureOnly_Short(plans, "3d_fullres", 0, dataset_json, torch.device("cpu"))
        trainer.device = torch.device("cpu")
        trainer.align_rampup_epochs = 0
        trainer.on_train_start()
        trainer.on_train_epoch_start()
        outputs = [trainer.train_step(next(trainer.dataloader_train)) for _ in range(2)]
        trainer.on_train_epoch_end(outputs)
        # --c under DDP: every rank gets its own random streams back, not rank 0's
        checkpoint = str(Path(out_dir) / "checkpoint.pth")
        trainer.save_checkpoint(checkpoint)
        saved_shift_stream = trainer.random_streams.generator("structure_shift").get_state()
        dist.barrier()
        resumed = GLUATrainer_FeatureOnly_Short(dict(plans, continue_training=True), "3d_fullres", 0, dataset_json,
                                                torch.device("cpu"))
        resumed.device = torch.device("cpu")
        resumed.load_checkpoint(checkpoint)
        resumed.on_train_start()
        restored_shift_stream = resumed.random_streams.generator("structure_shift").get_state()
        resumed.components.shutdown()
        torch.save({"network": trainer._tap().state_dict(),
                    "discriminator": trainer.components.discriminator_module.state_dict(),
                    "batch_size": trainer.batch_size,
                    "align_loss_logged": trainer.logger.get_value("glua_align_loss", 0),
                    "saved_shift_stream": saved_shift_stream, "restored_shift_stream": restored_shift_stream},
                   Path(out_dir) / f"rank{rank}.pt")
        # a NaN on rank 1 only: both ranks must stop, neither may hang in the next collective
        if rank == 1:
            # keep the graph: every parameter still gets a (NaN) gradient, as in a real blow-up
            real_loss = trainer.loss
            trainer.loss = lambda output, target: real_loss(output, target) * float("nan")
        try:
            trainer.train_step(next(trainer.dataloader_train))
            (Path(out_dir) / f"rank{rank}.no_error").touch()
        except AdversarialDivergenceError as e:
            (Path(out_dir) / f"rank{rank}.diverged").write_text(str(e))
        trainer.components.shutdown()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def planned_dataset(session_root):
    folder = write_tiny_uda_dataset(Path(os.environ["nnUNet_raw"]), DATASET_ID, name="GLUADDPTiny")
    plan_and_preprocess(DATASET_ID, configurations=("3d_fullres",))
    return folder


def test_two_cpu_ranks_stay_in_sync_and_stop_together(planned_dataset, tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), planned_dataset.name, str(tmp_path)), nprocs=2,
             join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["batch_size"] + r1["batch_size"] == 2  # nnU-Net splits the global batch over the ranks
    for part in ("network", "discriminator"):
        for k in r0[part]:
            assert torch.allclose(r0[part][k].float(), r1[part][k].float(), atol=1e-6), f"{part}.{k} out of sync"
    # epoch logs are gathered over ranks: both report the same value
    assert r0["align_loss_logged"] == pytest.approx(r1["align_loss_logged"])
    for r in (r0, r1):
        assert torch.equal(r["saved_shift_stream"], r["restored_shift_stream"])
    assert not torch.equal(r0["saved_shift_stream"], r1["saved_shift_stream"]), "ranks must not share a stream"
    assert (tmp_path / "rank0.diverged").exists() and (tmp_path / "rank1.diverged").exists()
    assert "segmentation loss = nan" in (tmp_path / "rank1.diverged").read_text()
    assert "on another rank" in (tmp_path / "rank0.diverged").read_text()
