"""Data-parallel training: 2 CPU processes under torchrun (gloo) match one process."""
import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train_helpers import (arcface_file, latents, lpips_files, one_thread,  # noqa: F401
                           train, weights)
from vrfam_rt.errors import VrfamError
from vrfam_rt.training.core import Ranks

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               "-m", "vrfam_rt", "train", *map(str, args), "--quiet", "--device", "cpu"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def losses(run: Path) -> torch.Tensor:
    with open(run / "log.csv") as f:
        return torch.tensor([[float(v) for v in row.values()] for row in csv.DictReader(f)])


def assert_same_training(one: Path, two: Path, components):
    for component in components:
        a, b = weights(one / "bundle", component), weights(two / "bundle", component)
        for key in a:
            assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), (component, key)
    assert torch.allclose(losses(one), losses(two), rtol=1e-4, atol=1e-6, equal_nan=True)


def test_two_process_classifier_equals_one_process_on_the_same_global_batch(tmp_path, tiny):
    data = tmp_path / "latents.safetensors"
    latents(tiny, 40).save(data)
    args = ["classifier", "--config", "tiny", "--data", data, "--batch", 8, "--steps", 5]
    assert train(*args, "--out", tmp_path / "one").exit_code == 0
    result = torchrun(*args, "--out", tmp_path / "two")
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"world_size": 2' in (tmp_path / "two" / "run.json").read_text()
    assert_same_training(tmp_path / "one", tmp_path / "two", ["classifier"])


def test_two_process_encoder_equals_one_process_on_the_same_global_batch(tmp_path, tiny):
    heads, backbone = lpips_files(tmp_path)
    args = ["encoder", "--config", "tiny", "--data", "generator", "--batch", 4, "--steps", 3,
            "--progressive-start", 1, "--progressive-every", 1, "--d-reg-every", 2,
            "--lpips-weights", heads, "--lpips-backbone", backbone,
            "--arcface", arcface_file(tiny, tmp_path)]
    assert train(*args, "--out", tmp_path / "one").exit_code == 0
    result = torchrun(*args, "--out", tmp_path / "two")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_training(tmp_path / "one", tmp_path / "two", ["encoder", "discriminator"])



def test_two_process_generator_equals_one_process_on_the_same_global_batch(tmp_path):
    args = ["generator", "--config", "tiny", "--data", "synth", "--batch", 4, "--steps", 3,
            "--lr", 1e-5, "--eval-samples", 4]
    assert train(*args, "--out", tmp_path / "one").exit_code == 0
    result = torchrun(*args, "--out", tmp_path / "two")
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.allclose(losses(tmp_path / "one"), losses(tmp_path / "two"), rtol=1e-5)
    # Adam's g / (|g| + eps) turns rounding-level differences of a near-zero gradient into
    # a whole lr step, so a few weights (2 of 286168 when measured) may differ by ~lr
    a, b = weights(tmp_path / "one" / "bundle", "generator"), \
        weights(tmp_path / "two" / "bundle", "generator")
    close = [torch.isclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a]
    assert sum(c.sum().item() for c in close) / sum(c.numel() for c in close) > 0.9999

def test_a_global_batch_that_does_not_split_over_the_processes_is_refused():
    assert Ranks(rank=1, world=2).shard(8) == slice(4, 8)
    with pytest.raises(VrfamError, match="--batch 3 does not split over 2 processes"):
        Ranks(rank=0, world=2).shard(3)
