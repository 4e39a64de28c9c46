"""The training loop every trainer shares: seeding, data-parallel ranks, checkpoints, logs.

A trainer is a `Task`: it owns its networks and optimizers and knows how to take one
optimisation step. `run` drives it: it restores or seeds the state, calls `step` for
every step, writes `log.csv` (step, loss, one column per term), shows a progress bar,
writes `checkpoint.pt` atomically and finally merges the trained networks into
`bundle/`. Everything random inside a step is drawn from generators seeded by
(seed, step), so a resumed run and a run split over ranks see the same numbers as
one uninterrupted single-process run.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from torch import nn

from vrfam_rt.version import __version__
from vrfam_rt.errors import VrfamError, argument
from vrfam_rt.fileio import atomic_file, write_text_atomic

CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
RUN = "run.json"
BUNDLE = "bundle"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The core flags every `vrfam-rt train` command takes."""

    out: Path                      # folder for checkpoint.pt, log.csv, run.json, bundle/
    steps: int                     # optimisation steps in total (a resumed run counts on)
    batch: int                     # global batch, split evenly over the ranks
    lr: float
    seed: int = 0
    resume: bool = False
    checkpoint_every: int = 500    # steps between checkpoints (the last step always writes)
    command: str = "vrfam-rt train"  # recorded as the bundle's provenance
    progress: bool = True


# ---- data-parallel ranks -----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Ranks:
    """Where this process sits in a data-parallel run (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: int) -> slice:
        """This rank's part of a global batch of `batch` samples."""
        if batch % self.world:
            raise VrfamError(f"{argument('batch', batch)} does not split over {self.world} "
                             "processes; "
                             f"use a multiple of {self.world}")
        part = batch // self.world
        return slice(self.rank * part, (self.rank + 1) * part)

    def average_gradients(self, params) -> None:
        """Mean of every gradient over the ranks: the global-batch gradient of a mean loss."""
        if self.world == 1:
            return
        import torch.distributed as dist
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(self.world)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Per-rank numbers averaged over the ranks (for the log)."""
        if self.world == 1:
            return values
        import torch.distributed as dist
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world).tolist()))

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def close(self) -> None:
        """Leave the process group: it is freed and its backend's threads are joined (see
        init_ranks), so torchrun's processes exit cleanly."""
        if self.world > 1:
            import torch.distributed as dist
            dist.destroy_process_group()


def init_ranks(device: str, env: dict[str, str]) -> Ranks:
    """Ranks from torchrun's RANK/WORLD_SIZE/LOCAL_RANK (gloo on CPU, nccl on CUDA)."""
    world = int(env.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if world == 1:
        return Ranks(0, 1, dev)
    import torch.distributed as dist
    rank, local = int(env["RANK"]), int(env.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        # A trainer's first optimizer imports torch._dynamo, which imports modules whose
        # functions default to `group=group.WORLD` (torch.distributed.nn.functional).
        # Imported after init_process_group, those defaults keep the group alive past
        # destroy_process_group: gloo's worker threads are never joined, and one that
        # drops its last work (and the Python tensors in it) while the interpreter
        # finalizes aborts the process (std::terminate, exit -6). Imported first, they
        # hold None, and close() frees the group and joins its threads.
        from torch import _dynamo  # noqa: F401
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Ranks(rank, world, dev)


# ---- randomness -------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for the random draws of one step; `stream` separates uses."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 16 + stream)


def batch_indices(n: int, batch: int, step: int, seed: int) -> torch.Tensor:
    """Sample indices [batch] of global batch `step`: epochs of seeded permutations of n.

    Stateless: the sampler's position is the step, so resuming needs nothing else.
    """
    pos = torch.arange(step * batch, (step + 1) * batch)
    epochs, offsets = pos // n, pos % n
    out = torch.empty(batch, dtype=torch.long)
    for epoch in epochs.unique().tolist():
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        mask = epochs == epoch
        out[mask] = perm[offsets[mask]]
    return out


def rng_state() -> dict[str, Any]:
    """torch, numpy and python RNG states in a form torch.load(weights_only=True) reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                      "has_gauss": has_gauss, "gauss": gauss},
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ---- the task interface -----------------------------------------------------------------------
class Task:
    """One trainer. Subclasses set `component`, `terms`, `networks`, `optimizers`.

    `networks` are the trained modules (saved in the checkpoint); `step(step)` runs one
    optimisation step on this rank's share of the global batch and returns the loss
    terms as floats, "loss" (the weighted total) included; `bundle()` returns the input
    bundle with the trained networks merged in. A trainer whose ranks split the global
    batch reads this rank's part with `batch(step)`; every loss is a mean over the samples,
    so the mean of the ranks' gradients is the gradient of the global batch.
    """

    component: str = ""
    terms: tuple[str, ...] = ()
    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    active: dict[str, bool] = {}     # which optional loss terms run (recorded in run.json)
    continued: tuple[str, ...] = ()  # trained entries that started from the input's weights

    @property
    def trained(self) -> tuple[str, ...]:
        """Provenance keys of the bundle entries this task writes."""
        return (self.component,)

    def step(self, step: int) -> dict[str, float]:
        raise NotImplementedError

    def bundle(self):
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """Numbers about the trained result for run.json (e.g. an accuracy)."""
        return {}

    def state(self) -> dict[str, Any]:
        return {"networks": {k: m.state_dict() for k, m in self.networks.items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def load(self, state: dict[str, Any]) -> None:
        for key, module in self.networks.items():
            module.load_state_dict(state["networks"][key])
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])


def optimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor, ranks: Ranks) -> None:
    """zero_grad, backward, average the gradients over the ranks, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    ranks.average_gradients(p for group in optimizer.param_groups for p in group["params"])
    optimizer.step()


# ---- files ------------------------------------------------------------------------------------
def save_atomic(obj: Any, path: Path) -> None:
    """torch.save through a temporary sibling renamed into place."""
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise VrfamError(f"{path} is not a readable checkpoint ({exc}); start a new run "
                         "(without `resume=True`)") from None


class CsvLog:
    """log.csv: `step`, `loss`, one column per term; a resumed run keeps rows up to its start."""

    def __init__(self, path: Path, terms: tuple[str, ...], start: int):
        self.columns = ["step", "loss", *terms]
        self.path = path
        rows = []
        if start and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(path, buf.getvalue())

    def append(self, step: int, values: dict[str, float]) -> None:
        cells = [str(step)] + [format(values[c], ".9g") for c in self.columns[1:]]
        with open(self.path, "a") as f:
            f.write(",".join(cells) + "\n")


def versions() -> dict[str, str]:
    return {"vrfam-rt": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def step_timing(durations: list[float]) -> dict[str, float | int | None]:
    """Steps run, the first step's seconds (warm-up) and the median of the others."""
    rest = sorted(durations[1:]) or durations
    return {"steps": len(durations),
            "first_step_s": round(durations[0], 4) if durations else None,
            "median_step_s": round(rest[len(rest) // 2], 4) if rest else None}


# ---- the loop ---------------------------------------------------------------------------------
def run(task: Task, options: RunOptions, ranks: Ranks,
        args: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Train `task` to options.steps; return the bundle folder written under options.out
    and the task's summary (both on rank 0; other ranks get the folder and {})."""
    out = Path(options.out)
    checkpoint = out / CHECKPOINT
    start = 0
    if options.resume:
        if not checkpoint.is_file():
            raise VrfamError(f"{checkpoint}: nothing to resume; run without `resume=True`")
        state = load_checkpoint(checkpoint)
        if state.get("component") != task.component:
            raise VrfamError(f"{checkpoint} holds a {state.get('component')} run, not "
                             f"{task.component}; choose another `out=PATH`")
        task.load(state["task"])
        set_rng_state(state["rng"])
        start = state["step"]
    elif checkpoint.exists():
        raise VrfamError(f"{out} already holds a run; pass `resume=True` to continue it or "
                         "choose another `out=PATH`")
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
        record = {"command": options.command, "component": task.component, "args": args,
                  "seed": options.seed, "world_size": ranks.world, "device": str(ranks.device),
                  "terms": list(task.terms),
                  "active_terms": task.active or {t: True for t in task.terms},
                  "resumed_from": start, "versions": versions()}
        write_text_atomic(out / RUN, json.dumps(record, indent=2, default=str) + "\n")
        log = CsvLog(out / LOG, task.terms, start)
    shown = ranks.main and options.progress
    bar = click.progressbar(length=options.steps, label=f"train {task.component}",
                            file=sys.stderr, item_show_func=lambda terms: terms) \
        if shown else contextlib.nullcontext()
    durations = []
    with bar:
        if shown:
            bar.update(start)
        for step in range(start, options.steps):
            began = time.perf_counter()
            values = ranks.mean(task.step(step))
            durations.append(time.perf_counter() - began)
            if ranks.main:
                log.append(step + 1, values)
                if shown:
                    bar.update(1, " ".join(f"{k} {v:.4g}" for k, v in values.items()))
                if (step + 1) % options.checkpoint_every == 0 or step + 1 == options.steps:
                    save_atomic({"component": task.component, "step": step + 1,
                                 "task": task.state(), "rng": rng_state()}, checkpoint)
    bundle_dir, result = out / BUNDLE, {}
    if ranks.main:
        result = task.summary()
        bundle = task.bundle()
        for name in task.trained:
            entry = {"source": "trained", "command": options.command,
                     "steps": options.steps, "seed": options.seed}
            if name in task.continued:        # a fine-tune: keep what it continued
                entry["continues"] = bundle.provenance.get(name, {"source": "unknown"})
            bundle.provenance[name] = entry
        bundle.save(bundle_dir, overwrite=True, command=options.command)
        record = json.loads((out / RUN).read_text())
        record["result"] = result
        record["timing"] = step_timing(durations)
        write_text_atomic(out / RUN, json.dumps(record, indent=2, default=str) + "\n")
    ranks.barrier()
    return bundle_dir, result
