"""The main job's own logic (the job itself runs for minutes and is timed by hand, see README)."""
from nnunet_glua.demo import DEMO_TRAINERS, planning_env
from nnunet_glua.experiments.rows import ADAPTED_ROW, LOWER_ROW, START_ROW


def test_planning_works_with_no_augmentation_workers_set():
    # nnUNet_n_proc_DA=0 is the usual CPU setting; nnU-Net's planner would pass it to torch.set_num_threads
    env = {"nnUNet_n_proc_DA": "0", "nnUNet_raw": "/data/raw"}
    assert planning_env(env) == {"nnUNet_raw": "/data/raw"}
    assert env["nnUNet_n_proc_DA"] == "0"  # the caller's mapping is left alone
    assert planning_env({"nnUNet_n_proc_DA": "4"}) == {"nnUNet_n_proc_DA": "4"}
    assert planning_env({}) == {}


def test_demo_rows_are_the_benchmark_rows_it_compares():
    # the printed table takes its lower bound by name: the demo's rows must carry the benchmark's labels
    assert list(DEMO_TRAINERS) == [START_ROW, LOWER_ROW, ADAPTED_ROW]
    for trainer, starts_from in DEMO_TRAINERS.values():
        assert starts_from is None or starts_from in DEMO_TRAINERS
        assert trainer.endswith(("_Demo", "_DemoFineTune"))
