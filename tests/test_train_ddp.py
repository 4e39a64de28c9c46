"""Data-parallel training (torchrun, gloo on CPU): what splitting the global batch promises.

Two processes never give one process's weights bit for bit: they reduce the gradients in
another order, oneDNN picks other kernels per batch size and ISA, and Adam turns a
rounding-level difference of a near-zero gradient into a step of size lr. What data
parallelism does promise, and what these tests check:
- each rank reads its own part of the global batch; the parts are disjoint and cover it;
- every loss is a mean over the samples, so the mean of the parts' gradients is the
  global batch's gradient (checked in one process, to a tolerance scaled to its norm);
- so a two-process run starts from the single-process loss and takes the same Adam steps
  up to the rounding of the gradients (checked under torchrun, one run per trainer).
"""
import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train_helpers import arcface_file, latents, lpips_files, train
from vrfam_rt import Bundle
from vrfam_rt.errors import VrfamError
from vrfam_rt.training.classifier import ClassifierTask
from vrfam_rt.training.core import Ranks, RunOptions
from vrfam_rt.training.encoder import EncoderLoss, EncoderTask, Progressive
from vrfam_rt.training.generator import DistillLoss, GeneratorTask
from vrfam_rt.training.losses import load_arcface, load_lpips
from vrfam_rt.synthetic.oracles import load_oracles
from vrfam_rt.training.transformer import TransformerLoss, TransformerTask

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent


# ---- the parts of a global batch ----------------------------------------------------------------
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_the_ranks_parts_of_a_global_batch_are_disjoint_and_cover_it(world):
    batch = 12
    parts = [torch.arange(batch)[Ranks(rank, world).shard(batch)] for rank in range(world)]
    assert torch.equal(torch.cat(parts), torch.arange(batch))
    assert [len(p) for p in parts] == [batch // world] * world


def test_a_global_batch_that_does_not_split_over_the_processes_is_refused():
    with pytest.raises(VrfamError, match="`batch=3` does not split over 2 processes"):
        Ranks(rank=0, world=2).shard(3)


class Shard(Ranks):
    """Rank `rank` of `world` inside this one process: it reads its part of the batch and
    keeps its own gradients (no process group to average them over)."""

    def average_gradients(self, params) -> None:
        pass

    def mean(self, values):
        return values


def options(tmp_path, batch):
    # lr 0: Adam's step is lr * m / (sqrt(v) + eps) = 0, so a step leaves the weights and
    # only computes the gradients of this rank's part
    return RunOptions(out=tmp_path, steps=1, batch=batch, lr=0.0)


def classifier_task(tmp_path, ranks):
    bundle = Bundle.random("tiny", seed=0)
    torch.manual_seed(0)                          # the fresh classifier's initial weights
    return ClassifierTask(bundle, latents(bundle, 40), options(tmp_path, 8), ranks)


def encoder_task(tmp_path, ranks):
    bundle = Bundle.random("tiny", seed=0)
    heads, backbone = lpips_files(tmp_path)
    arcface = load_arcface(arcface_file(bundle, tmp_path))
    weights = EncoderLoss(d_reg_every=1, d_lr=0.0)        # the R1 term on this step too
    return EncoderTask(bundle, None, load_lpips(heads, backbone), arcface, weights,
                       Progressive(start=0, every=1), options(tmp_path, 4), ranks)


def transformer_task(tmp_path, ranks):
    bundle = Bundle.random("tiny", seed=0)
    arcface = load_arcface(arcface_file(bundle, tmp_path))
    torch.manual_seed(0)                          # the fresh f_Smiling's initial weights
    return TransformerTask(bundle, latents(bundle, 40), "Smiling", "nonlinear", "uniform",
                           arcface, TransformerLoss(latent=1.0), options(tmp_path, 8), ranks)


def generator_task(tmp_path, ranks):
    return GeneratorTask(Bundle.random("tiny", seed=0), load_oracles()[0], DistillLoss(), 4,
                         options(tmp_path, 4), ranks)


TASKS = {"classifier": classifier_task, "encoder": encoder_task,
         "transformer": transformer_task, "generator": generator_task}


def gradients(task) -> dict[str, torch.Tensor]:
    return {f"{net}.{name}": p.grad.clone() for net, module in task.networks.items()
            for name, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", TASKS)
def test_each_ranks_part_is_its_slice_of_the_global_batch(kind, tmp_path):
    whole = TASKS[kind](tmp_path, Ranks()).batch(0)
    parts = [TASKS[kind](tmp_path, Shard(rank, 2)).batch(0) for rank in range(2)]
    whole = whole if isinstance(whole, tuple) else (whole,)
    parts = [p if isinstance(p, tuple) else (p,) for p in parts]
    for j, full in enumerate(whole):
        joined = torch.cat([p[j] for p in parts])
        assert joined.shape == full.shape
        # indices, W codes and noise are selected exactly; generator renders of a half batch
        # round differently from the whole batch's (another conv kernel): 5e-6 measured
        assert torch.allclose(joined, full, rtol=1e-5, atol=1e-5), (kind, j)


@pytest.mark.parametrize("kind", TASKS)
def test_the_mean_of_the_parts_gradients_is_the_global_batch_gradient(kind, tmp_path):
    grads = []
    for ranks in (Ranks(), Shard(0, 2), Shard(1, 2)):
        task = TASKS[kind](tmp_path, ranks)
        task.step(0)
        grads.append(gradients(task))
    whole, first, second = grads
    assert whole and first.keys() == whole.keys() == second.keys()
    error = sum(((first[k] + second[k]) / 2 - g).pow(2).sum() for k, g in whole.items()).sqrt()
    norm = sum(g.pow(2).sum() for g in whole.values()).sqrt()
    # float32 rounding of the sums, amplified where a loss has a kink (L1, ReLU features
    # that are 0 in one batch and 1e-9 in the other): measured up to 5e-5 of the norm with
    # AVX2 kernels, 5e-7 with AVX-512. A part's gradient alone is 0.75-0.98 of it away.
    assert error <= 1e-3 * norm, (kind, error / norm)


# ---- torchrun: two processes against one --------------------------------------------------------
def torchrun(*program):
    """`python PROGRAM...` (a script, or -m and a module) in 2 CPU processes; the launcher's
    rendezvous binds port 0 itself (--standalone), so no free port is guessed and raced for."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", *map(str, program)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def torchrun_train(*args):
    """`vrfam-rt train ...` in 2 CPU processes."""
    return torchrun("-m", "vrfam_rt", "train", *args, "--quiet", "--device", "cpu")


CLOSE_RANKS = """
import collections, os, pathlib
import torch
from vrfam_rt.training.core import init_ranks

def threads():
    return collections.Counter(open(f"/proc/self/task/{t}/comm").read().strip()
                               for t in os.listdir("/proc/self/task"))

before = threads()
ranks = init_ranks("cpu", dict(os.environ))
torch.optim.Adam(torch.nn.Linear(2, 2).parameters())   # what every trainer builds next
ranks.barrier()
ranks.close()
left = sorted((threads() - before).elements())
pathlib.Path(__file__).with_name(f"rank{ranks.rank}.txt").write_text(f"threads left: {left}")
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="lists threads in /proc")
def test_closing_the_ranks_joins_the_process_groups_threads(tmp_path):
    # a gloo worker thread left running at exit can drop its last work (and the Python
    # tensors in it) while the interpreter finalizes: std::terminate, the rank exits -6
    script = tmp_path / "close_ranks.py"
    script.write_text(CLOSE_RANKS)
    result = torchrun(script)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):      # a file each: the ranks' prints share one pipe and interleave
        assert (tmp_path / f"rank{rank}.txt").read_text() == "threads left: []", rank


def log_rows(run: Path) -> list[dict[str, float]]:
    with open(run / "log.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)["task"]


def adam_step_bound(beta1: float, beta2: float, t: int) -> float:
    """The largest |m_hat / sqrt(v_hat)| of Adam's step t over all gradient sequences.

    Cauchy-Schwarz on m_t = (1-b1) sum b1^(t-i) g_i against v_t = (1-b2) sum b2^(t-i) g_i^2
    gives |m_t| <= (1-b1) / sqrt(1-b2) * sqrt(sum_j (b1^2/b2)^j) * sqrt(v_t); then the bias
    corrections. Step 1 gives 1: Adam's first step is lr * g / |g|.
    """
    geometric = sum((beta1 ** 2 / beta2) ** j for j in range(t))
    return ((1 - beta1) / math.sqrt(1 - beta2) * math.sqrt(geometric)
            * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t))


def assert_two_processes_match_one(one: Path, two: Path, start: Path, lr: float, steps: int):
    """The promise of data parallelism for `steps` Adam steps from the weights in `start`.

    - The logged losses are finite (R1 only on its steps), and the first one, computed
      before any step, is one process's loss up to float32 rounding.
    - Each weight of either run lies within sum_t lr * adam_step_bound(t) of the start, so
      the runs differ by at most twice that: a hard bound, met whatever the rounding.
    - The two runs take the same steps: their updates (weights minus start) differ by at
      most a tenth of the update's norm. Rounding-level gradient differences flip
      m / sqrt(v) only where a gradient is ~0: measured at most 0.004 of the norm (the
      generator, AVX2 kernels). Ranks that step on their own half batch, with the
      all-reduce left out, flip a large share of all steps: measured 0.84 to 0.99.
    """
    assert '"world_size": 2' in (two / "run.json").read_text()
    rows = {run: log_rows(run) for run in (one, two)}
    assert len(rows[one]) == len(rows[two]) == steps
    for row in rows[one] + rows[two]:
        for key, value in row.items():
            assert math.isfinite(value) or key == "r1", (key, value)
    assert rows[two][0]["loss"] == pytest.approx(rows[one][0]["loss"], rel=1e-5)
    a, b, w0 = checkpoint(one), checkpoint(two), checkpoint(start)
    for net in a["networks"]:
        groups = a["optimizers"][net]["param_groups"]
        beta1, beta2 = groups[0]["betas"]
        reach = sum(lr * adam_step_bound(beta1, beta2, t) for t in range(1, steps + 1))
        diff = update = 0.0
        for key, w in a["networks"][net].items():
            if not w.is_floating_point():
                continue
            assert (w - b["networks"][net][key]).abs().max() <= 2 * reach + 1e-6, (net, key)
            diff += (w - b["networks"][net][key]).double().pow(2).sum().item()
            update += (w - w0["networks"][net][key]).double().pow(2).sum().item()
        assert w0["optimizers"][net]["param_groups"][0]["lr"] == 0    # the initial weights
        assert update > 0 and math.sqrt(diff) <= 0.1 * math.sqrt(update), net


def trainer_args(kind: str, folder: Path, tiny) -> list:
    """A few-step run of each trainer on tiny inputs (its own flags, the core ones added)."""
    if kind in ("classifier", "transformer"):
        latents(tiny, 40).save(folder / "latents.safetensors")
    identity = []
    if kind == "encoder":
        heads, backbone = lpips_files(folder)
        identity = ["--lpips-weights", heads, "--lpips-backbone", backbone,
                    "--arcface", arcface_file(tiny, folder)]
    return {
        "classifier": ["--data", folder / "latents.safetensors", "--batch", 8, "--lr", 1e-3],
        "encoder": ["--data", "generator", "--batch", 4, "--lr", 1e-4, "--progressive-start", 1,
                    "--progressive-every", 1, "--d-reg-every", 2, *identity],
        "transformer": ["--data", folder / "latents.safetensors", "--batch", 8, "--lr", 1e-3,
                        "--attr", "Smiling", "--alpha-mode", "uniform", "--lambda-latent", 1,
                        "--no-identity"],
        "generator": ["--data", "synth", "--batch", 4, "--lr", 1e-3, "--eval-samples", 4,
                      "--lr-final", 1],
        "boundaries": ["--data", "generator", "--batch", 2, "--lr", 1e-2, "--attr", "Smiling",
                       "--samples", 400, "--ratio", 0.25],
    }[kind]


KINDS = ("classifier", "encoder", "transformer", "generator", "boundaries")


@pytest.mark.parametrize("kind", KINDS)
def test_two_processes_take_the_steps_of_one_on_the_same_global_batch(kind, tmp_path, tiny):
    steps = 3
    args = [kind, "--config", "tiny", *trainer_args(kind, tmp_path, tiny)]
    lr = args[args.index("--lr") + 1]
    # the start: one step at lr 0 (every network's lr) leaves the initial weights
    frozen = args + (["--d-lr", 0] if kind == "encoder" else [])
    frozen[args.index("--lr") + 1] = 0
    assert train(*frozen, "--steps", 1, "--out", tmp_path / "start").exit_code == 0
    result = train(*args, "--steps", steps, "--out", tmp_path / "one")
    assert result.exit_code == 0, result.output
    result = torchrun_train(*args, "--steps", steps, "--out", tmp_path / "two")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_two_processes_match_one(tmp_path / "one", tmp_path / "two", tmp_path / "start", lr,
                                   steps)
