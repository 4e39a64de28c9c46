"""Per-step time of every `vrfam-rt train` command at one config, on this machine.

python -m vrfam_rt.benchmarks.train_steps --config tiny --work runs/bench --json steps.json

Each trainer runs as its own `vrfam-rt train` process for a few steps on inputs made
here: a random bundle of the config, a latent dataset of its generator's codes with
random labels, and LPIPS (AlexNet) and ArcFace (IR-SE of the config) files of random
weights in the public layouts. The numbers come from each run's run.json: the median
step after the first (the first step warms up). Prints a table, writes JSON.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import torch


def prepare(config: str, work: Path, samples: int) -> dict[str, Path]:
    """The input files every trainer command reads."""
    from vrfam_rt import Bundle
    from vrfam_rt.training.data import LatentDataset, sample_w
    from vrfam_rt.training.losses import LPIPS

    work.mkdir(parents=True, exist_ok=True)
    files = {"latents": work / "latents.safetensors", "heads": work / "alex.pth",
             "backbone": work / "alexnet.pth", "arcface": work / "arcface.pth"}
    if all(f.is_file() for f in files.values()):
        return files
    bundle = Bundle.random(config, seed=0, components=("generator", "classifier", "identity"))
    g = bundle.generator
    gen = torch.Generator().manual_seed(0)
    w = sample_w(g, samples, gen)
    labels = (torch.rand(samples, len(bundle.classifier.attributes), generator=gen) > 0.5).float()
    LatentDataset(w[:, None].expand(-1, g.n_latent, -1).contiguous(), labels,
                  bundle.classifier.attributes).save(files["latents"])
    state = LPIPS("alex").state_dict()
    torch.save({k: v.abs() for k, v in state.items() if k.startswith("lin")}, files["heads"])
    torch.save({k: v for k, v in state.items() if k.startswith("features")}, files["backbone"])
    torch.save(bundle.identity.state_dict(), files["arcface"])
    return files


def commands(config: str, files: dict[str, Path], steps: int, identity_batch: int,
             threads: int | None, device: str = "cpu") -> dict[str, list[str]]:
    """name -> argv of each measured run (batch as in the paper)."""
    base = ["--config", config, "--steps", str(steps), "--device", device, "--quiet"]
    base += ["--threads", str(threads)] if threads else []
    weights = ["--lpips-weights", str(files["heads"]), "--lpips-backbone", str(files["backbone"])]
    arcface = ["--arcface", str(files["arcface"])]
    latents = ["--data", str(files["latents"])]
    return {
        "encoder (batch 4)": ["encoder", *base, "--data", "generator", "--batch", "4",
                              "--progressive-start", "0", "--progressive-every", "1",
                              *weights, *arcface],
        "classifier (batch 32)": ["classifier", *base, *latents, "--batch", "32"],
        "transformer, no identity (batch 32)": ["transformer", *base, *latents, "--batch", "32",
                                                "--attr", "Smiling", "--no-identity"],
        f"transformer + identity (batch {identity_batch})": [
            "transformer", *base, *latents, "--batch", str(identity_batch), "--attr", "Smiling",
            *arcface],
        "boundaries (10000 samples)": ["boundaries", *base, "--data", "generator", "--samples",
                                       "10000", "--attr", "Smiling"],
    }


@click.command()
@click.option("--config", default="tiny", type=click.Choice(["tiny", "ffhq-1024"]))
@click.option("--work", required=True, type=click.Path(path_type=Path),
              help="Folder for the inputs and the runs.")
@click.option("--steps", default=4, show_default=True, type=click.IntRange(2))
@click.option("--identity-batch", default=32, show_default=True, type=click.IntRange(1),
              help="Batch of the transformer run with the identity loss (memory bound).")
@click.option("--threads", type=click.IntRange(1), help="CPU threads of each run.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--only", multiple=True, help="Run only the trainers whose name starts so.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def main(config, work, steps, identity_batch, threads, device, only, json_path):
    files = prepare(config, work / "inputs", samples=256)
    rows = []
    for name, argv in commands(config, files, steps, identity_batch, threads, device).items():
        if only and not name.startswith(only):
            continue
        out = work / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        command = [sys.executable, "-m", "vrfam_rt", "train", *argv, "--out", str(out)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            rows.append({"trainer": name, "error": done.stderr.strip().splitlines()[-1:]})
        else:
            timing = json.loads((out / "run.json").read_text())["timing"]
            rows.append({"trainer": name, **timing})
        rows[-1]["command"] = "vrfam-rt train " + shlex.join(argv + ["--out", str(out)])
        click.echo(f"| {config} | {name} | {rows[-1].get('median_step_s', 'failed')} | "
                   f"{rows[-1].get('first_step_s', rows[-1].get('error'))} |")
    if json_path:
        from vrfam_rt.fileio import write_json_atomic
        write_json_atomic(json_path, {"config": config, "device": device,
                                      "threads": threads or torch.get_num_threads(),
                                      "rows": rows})


if __name__ == "__main__":
    main()
