"""Data-parallel training (repro._distributed): ε_θ trained by 2 processes (gloo, the CPU backend
torchrun uses here, started by torchrun itself) follows the single-process run to float
tolerance, only rank 0 writes the checkpoint, and a run stopped on 2 processes resumes on 1.

"Follows" is measured on what the network computes (its output on a fixed batch) and on the loss
curve, not weight by weight: a bias followed by a normalisation has no gradient but float noise,
which Adam turns into steps of the learning rate's size that differ with the summation order, and
which change nothing downstream."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from repro import kerneldiff as kd
from repro import profiles, synth
from repro.experiments import kerneldiff as kdx
from repro._distributed import Shard
from repro._io import TrainingCheckpoint

TINY = kd.UNetConfig(image_size=16, kernel_size=5, channels=(4, 8), time_dim=8, attention_heads=1)
CONFIG = kd.TrainConfig(steps=6, batch_size=4, lr=1e-3, log_every=2, checkpoint_every=3)


def _data():
    images = [torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    return synth.BlurPairs(synth.motion_kernels(6, 5, synth.TRAIN_KERNEL_SEED), images, crop=16, seed=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out, checkpoint, stop_at):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    saves, save = [], TrainingCheckpoint.save
    TrainingCheckpoint.save = lambda self, step, *a, **k: (saves.append(step), save(self, step, *a, **k))
    try:
        run = kd.train(TINY, CONFIG, _data(), seed=0, checkpoint_path=checkpoint, stop_at=stop_at, progress=False)
        torch.save({"model": run.model.state_dict(), "ema": run.ema.state_dict(), "history": run.history,
                    "saves": saves}, f"{out}.rank{rank}")
    finally:
        dist.destroy_process_group()


def _train_on(world, folder, name, checkpoint=None, stop_at=None):
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / name
    mp.spawn(_worker, args=(world, _free_port(), str(out), checkpoint, stop_at), nprocs=world, join=True)
    return [torch.load(f"{out}.rank{r}") for r in range(world)]


def _output(state: dict, unet: kd.UNetConfig = TINY) -> torch.Tensor:
    """ε_θ with these weights on a fixed batch of noisy kernels and images (what the sampler calls)."""
    model = kd.new_model(unet).eval()
    model.load_state_dict(state)
    g = torch.Generator().manual_seed(1)
    s, n = unet.kernel_size, unet.image_size
    y, k = torch.rand(4, 3, n, n, generator=g), torch.rand(4, 1, s, s, generator=g)
    t, noise = torch.tensor([0, 300, 600, 999]), torch.randn(4, 1, s, s, generator=g)
    with torch.no_grad():
        return model(kd.Schedule().q_sample(kd.kernel_to_unit(k / k.sum((-2, -1), keepdim=True)), t, noise), 2 * y - 1, t)


def _close(a: dict, b: dict, unet: kd.UNetConfig = TINY) -> bool:
    return torch.allclose(_output(a, unet), _output(b, unet), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def single():
    run = kd.train(TINY, CONFIG, _data(), seed=0, progress=False)
    return {"model": run.model.state_dict(), "ema": run.ema.state_dict(), "history": run.history}


def test_a_run_stopped_on_two_processes_resumes_on_one(tmp_path, single):
    checkpoint = tmp_path / "checkpoint" / "eps.pt"
    ranks = _train_on(2, tmp_path / "runs", "half", checkpoint=str(checkpoint), stop_at=3)
    assert set(ranks[0]["saves"]) == {3} and ranks[1]["saves"] == []  # rank 0 alone writes
    # ... atomically: the checkpoint and its loss curve, no temporary file left
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["eps.json", "eps.pt"]
    run = kd.train(TINY, CONFIG, _data(), seed=0, checkpoint_path=checkpoint, progress=False)
    assert run.step == CONFIG.steps
    assert _close(run.model.state_dict(), single["model"]) and _close(run.ema.state_dict(), single["ema"])


def test_a_batch_that_does_not_split_is_refused():
    with pytest.raises(ValueError, match="does not split into 3 equal parts"):
        Shard(0, 3).check_batch(4)
    assert Shard(1, 2).take(torch.arange(4))[0].tolist() == [2, 3]
    assert Shard().take(torch.arange(4))[0].tolist() == [0, 1, 2, 3] and Shard().writes and not Shard(1, 2).writes


STEPS = 12


def test_repro_train_under_torchrun_follows_one_process_at_the_smoke_profile(tmp_path):
    """As a user runs it: `torchrun --nproc_per_node 2 -m repro train kerneldiff --profile smoke`
    against `repro train kerneldiff --profile smoke`, each in its own results folder (12 of the
    profile's steps: what is compared does not need all 60)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train = ["-m", "repro", "train", "kerneldiff", "--profile", "smoke", "--device", "cpu", "--steps", str(STEPS)]
    commands = {"two": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *train],
                "one": [sys.executable, *train]}
    states = {}
    for name, command in commands.items():
        run = subprocess.run(command, env={**env, "REPRO_RESULTS": str(tmp_path / name)}, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        assert run.stdout.count("ε_θ (") == 1, run.stdout  # rank 0 alone reports
        states[name] = torch.load(tmp_path / name / "smoke" / "kerneldiff" / f"diffusion_{STEPS}steps.pt",
                                  weights_only=False)
    assert states["two"]["step"] == states["one"]["step"] == STEPS
    unet = kdx.unet_config(profiles.get("smoke"))
    assert _close(states["two"]["ema"], states["one"]["ema"], unet)
    assert [h["loss"] for h in states["two"]["history"]] == pytest.approx([h["loss"] for h in states["one"]["history"]],
                                                                          rel=1e-5)
