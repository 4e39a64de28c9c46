"""Small real inputs for the trainer tests: faces, attribute files, latent datasets, weights."""
from pathlib import Path

import torch
from click.testing import CliRunner
from PIL import Image

from vrfam_rt import Bundle
from vrfam_rt.cli import main
from vrfam_rt.config import CELEBA_ATTRIBUTES
from vrfam_rt.training.data import LatentDataset
from vrfam_rt.training.losses import LPIPS


def train(*args):
    """`vrfam-rt train ...` in-process; returns the click result."""
    return CliRunner().invoke(main, ["train", *map(str, args), "--quiet"])


def write_images(folder: Path, n: int, size: int = 64, seed: int = 0) -> list[str]:
    """n random RGB PNGs; returns their file names."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    names = []
    for i in range(n):
        pixels = (torch.rand(size, size, 3, generator=gen) * 255).to(torch.uint8).numpy()
        names.append(f"{i:04d}.png")
        Image.fromarray(pixels).save(folder / names[-1])
    return names


def write_attrs(path: Path, files: list[str], labels: torch.Tensor,
                names=CELEBA_ATTRIBUTES) -> Path:
    """A list_attr_celeba.txt: count line, names line, `file +1/-1 ...` rows."""
    rows = [f + " " + " ".join("1" if v > 0 else "-1" for v in row)
            for f, row in zip(files, labels.tolist())]
    path.write_text(f"{len(files)}\n{' '.join(names)}\n" + "\n".join(rows) + "\n")
    return path


def latents(bundle: Bundle, n: int, seed: int = 0) -> LatentDataset:
    """W+ codes of the bundle's generator, labelled by its classifier (each label mixed)."""
    gen = torch.Generator().manual_seed(seed)
    g = bundle.generator
    with torch.no_grad():
        w = g.mapping(torch.randn(n, g.config.style_dim, generator=gen))
        wplus = w[:, None].expand(-1, g.n_latent, -1) + 0.1 * torch.randn(
            n, g.n_latent, g.config.style_dim, generator=gen)
        logits = bundle.classifier(wplus)
    labels = (logits > logits.median(0).values).float()
    return LatentDataset(wplus.contiguous(), labels, bundle.classifier.attributes)


def lpips_files(folder: Path) -> tuple[Path, Path]:
    """(lin heads file, AlexNet backbone file) in the public layouts, random weights."""
    torch.manual_seed(0)
    state = LPIPS("alex").state_dict()
    heads = {k: v.abs() for k, v in state.items() if k.startswith("lin")}   # LPIPS heads are >= 0
    backbone = {k: v for k, v in state.items() if k.startswith("features")}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(heads, folder / "alex.pth")
    torch.save(backbone, folder / "alexnet.pth")
    return folder / "alex.pth", folder / "alexnet.pth"


def arcface_file(bundle: Bundle, folder: Path) -> Path:
    """The bundle's (tiny, random) IR-SE ArcFace as a bare state dict file."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(bundle.identity.state_dict(), folder / "model_ir_se.pth")
    return folder / "model_ir_se.pth"


def weights(bundle_dir: Path, component: str) -> dict[str, torch.Tensor]:
    return Bundle.load(bundle_dir, components=(component,)).component(component).state_dict()


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
