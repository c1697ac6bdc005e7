"""Data-parallel training: two CPU processes (gloo) under torchrun give the single-process run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latentlab import distributed
from latentlab.training import list_checkpoints, step_batches

HERE = Path(__file__).parent


def _torchrun(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LATENTLAB_DEVICE": "cpu"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_step_batches_split_every_global_batch_exactly_over_processes():
    order = torch.randperm(23)
    single = step_batches(order, 10)
    assert [len(b) for b in single] == [10, 10, 3]
    per_rank = [step_batches(order, 10, rank, 2) for rank in range(2)]
    assert [len(b) for b in per_rank[0]] == [5, 5, 2] and [len(b) for b in per_rank[1]] == [5, 5, 1]
    for step, whole in enumerate(single):
        union = torch.cat([per_rank[0][step], per_rank[1][step]])
        assert sorted(union.tolist()) == sorted(whole.tolist())
    # a last global batch smaller than the number of processes is dropped, on every rank alike
    assert [len(b) for b in step_batches(torch.arange(21), 10, 0, 3)] == [4, 4]
    assert [len(b) for b in step_batches(torch.arange(21), 10, 2, 3)] == [3, 3]


def test_single_process_helpers_are_no_ops():
    assert not distributed.is_distributed() and distributed.world_size() == 1 and distributed.is_main_process()
    assert distributed.average_terms({"loss": 2.5}) == {"loss": 2.5}
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    distributed.average_gradients(torch.optim.SGD([p], lr=0.1))
    assert torch.equal(p.grad, torch.full((3,), 2.0))


def test_two_gloo_processes_match_the_single_process_run(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir(), multi.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    subprocess.run([sys.executable, str(HERE / "ddp_worker.py"), str(single)], check=True, env=env, timeout=120)
    _torchrun([str(HERE / "ddp_worker.py"), str(multi)], cwd=tmp_path)

    reference = torch.load(single / "rank0.pt", weights_only=True)
    ranks = [torch.load(multi / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert reference["world"] == 1 and all(r["world"] == 2 for r in ranks)
    for result in ranks:  # both processes end with the parameters of the one-process run
        for name, value in reference["state"].items():
            torch.testing.assert_close(result["state"][name], value, atol=1e-5, rtol=1e-4)
        for term, values in reference["history"].items():  # logged terms are global means
            assert result["history"][term] == pytest.approx(values, abs=1e-5)
    # checkpoints written once, by rank 0, in the same layout as a one-process run
    assert [p.name for p in list_checkpoints(multi / "ckpt")] == [p.name for p in list_checkpoints(single / "ckpt")]
    assert not any(p.name.endswith(".tmp") or ".tmp" in p.name for p in (multi / "ckpt").iterdir())


def test_torchrun_command_line_trains_a_face_model_once(tmp_path):
    out = tmp_path / "run"
    done = _torchrun(
        ["-m", "latentlab", "train", "--model", "vae", "--data", "synthetic", "--image-size", "32",
         "--num-train", "48", "--epochs", "1", "--batch-size", "16", "--latent-dim", "8", "--out", str(out)],
        cwd=Path(__file__).parent.parent,
    )
    log = done.stdout
    assert log.count("profile:") == 1 and log.count("done:") == 1, log  # rank 0 alone prints
    assert "2 process(es)" in log and "synthetic faces" in log
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-000000003.pt"]
    assert (out / "history.json").is_file()
