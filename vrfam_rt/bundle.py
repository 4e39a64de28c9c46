"""Bundles: the unit every stage passes on.

A bundle is a directory holding `bundle.json` and one `<component>.safetensors` per
network. `bundle.json` carries the format version, the model config, the attribute
order, the editing method of each transformer, each file's sha256, key count and
parameter count, and the provenance of each component. Loading checks all of it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vrfam_rt import manifests, models
from vrfam_rt.version import __version__
from vrfam_rt.config import ModelConfig, as_config
from vrfam_rt.errors import VrfamError
from vrfam_rt.fileio import sha256_bytes, sha256_file, staged_dir

MANIFEST = manifests.FORMATS["bundle"].file
COMPONENTS = ("generator", "encoder", "classifier", "transformer", "identity", "discriminator")
HOW_TO_GET = {
    "generator": "import a StyleGAN2 checkpoint with `vrfam-rt import --stylegan2 FILE`",
    "encoder": "import one with `vrfam-rt import --e4e FILE` (or `vrfam-rt import --psp FILE`)",
    "classifier": "import one with `vrfam-rt import --classifier FILE`",
    "transformer": "import one with `vrfam-rt import --transformer ATTR=FILE`",
    "discriminator": "train an encoder with `vrfam-rt train encoder`",
}


def check_state(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], source: str,
                optional: tuple[str, ...] = ()) -> None:
    """Fail with the first missing key, unexpected key or shape difference of `got`.

    `optional` lists key suffixes that `got` may lack (the module keeps its value).
    """
    missing = [k for k in expected if k not in got and not k.endswith(optional)]
    unexpected = [k for k in got if k not in expected]
    more = lambda keys: f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""  # noqa: E731
    if missing:
        raise VrfamError(f"{source}: missing key '{missing[0]}'{more(missing)}")
    if unexpected:
        raise VrfamError(f"{source}: unexpected key '{unexpected[0]}'{more(unexpected)}")
    for key, tensor in got.items():
        want = tuple(expected[key].shape)
        if tuple(tensor.shape) != want:
            raise VrfamError(f"{source}: '{key}' has shape {list(tensor.shape)}, "
                             f"vrfam-rt expects {list(want)}")


def load_state(module: nn.Module, state: dict[str, torch.Tensor], source: str,
               optional: tuple[str, ...] = ()) -> nn.Module:
    """Strictly load `state` into `module` (keys, shapes; dtype cast to the module's)."""
    expected = module.state_dict()
    check_state(expected, state, source, optional)
    merged = {k: state.get(k, v).to(v.dtype) for k, v in expected.items()}
    module.load_state_dict(merged, strict=True)
    return module


def _serialise(module: nn.Module) -> bytes:
    from safetensors.torch import save
    return save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()})


class Bundle:
    """Networks of one VR-FAM model with their config and provenance.

    Attributes `generator`, `encoder`, `classifier`, `transformer` are eval-mode
    modules (a missing one raises VrfamError saying how to get it); `identity` is
    the ArcFace network or None.
    """

    def __init__(self, config: ModelConfig | str, modules: dict[str, nn.Module],
                 provenance: dict[str, Any] | None = None,
                 transformer_methods: dict[str, str] | None = None):
        unknown = set(modules) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"unknown bundle components {sorted(unknown)}")
        self.config = as_config(config)
        self.modules = {name: modules[name].eval() for name in COMPONENTS if name in modules}
        self.provenance = dict(provenance or {})
        if "transformer" in self.modules:
            transformer_methods = self.modules["transformer"].methods
        methods = transformer_methods or {}
        self.transformer_methods = {a: methods.get(a, self.config.transformer.method)
                                    for a in self.attributes}
        self._hashes: dict[str, str] | None = None
        self.path: Path | None = None

    # ---- components -------------------------------------------------------------------
    def component(self, name: str) -> nn.Module:
        """The named network; a missing one raises VrfamError saying how to get it."""
        if name not in self.modules:
            where = f"bundle {self.path}" if self.path else "this bundle"
            raise VrfamError(f"{where} has no {name}; {HOW_TO_GET[name]}")
        return self.modules[name]

    generator = property(lambda self: self.component("generator"))
    encoder = property(lambda self: self.component("encoder"))
    classifier = property(lambda self: self.component("classifier"))
    transformer = property(lambda self: self.component("transformer"))
    discriminator = property(lambda self: self.component("discriminator"))
    identity = property(lambda self: self.modules.get("identity"))

    @property
    def attributes(self) -> tuple[str, ...]:
        """Transformer attribute order (the columns of `alphas`)."""
        return tuple(self.config.transformer.attributes)

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def random(cls, config: ModelConfig | str = "tiny", seed: int = 0,
               components: tuple[str, ...] = ("generator", "encoder", "classifier",
                                              "transformer", "identity")) -> "Bundle":
        """Freshly initialised networks; the same config and seed give the same weights.

        The encoder's latent_avg is the generator's mean W (4096 seeded samples).
        """
        config = as_config(config)
        if config.identity is None:
            components = tuple(c for c in components if c != "identity")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            modules = {name: models.build(config, name) for name in components}
            if "encoder" in modules:
                generator = modules.get("generator") or models.build(config, "generator")
                w_avg = generator.mean_latent(4096, seed=seed)          # [1,D]
                modules["encoder"].latent_avg.copy_(w_avg.expand_as(modules["encoder"].latent_avg))
        provenance = {name: {"source": "random", "seed": seed} for name in modules}
        return cls(config, modules, provenance)

    # ---- persistence ------------------------------------------------------------------
    def component_hashes(self) -> dict[str, str]:
        """sha256 of each component's safetensors serialisation."""
        if self._hashes is None:
            self._hashes = {n: sha256_bytes(_serialise(m)) for n, m in self.modules.items()}
        return self._hashes

    @property
    def digest(self) -> str:
        """sha256 identifying the bundle: config, method per attribute and weight hashes."""
        ident = {"config": self.config.to_dict(), "methods": self.transformer_methods,
                 "files": self.component_hashes()}
        return sha256_bytes(json.dumps(ident, sort_keys=True).encode())

    def save(self, path: str | os.PathLike, overwrite: bool = False,
             share: str | os.PathLike | None = None, command: str | None = None) -> Path:
        """Write the bundle directory; it appears at `path` whole or not at all.

        share: a saved bundle directory; components whose weights equal one of its
        files are not copied but named by relative path (`../vrfam/generator.safetensors`),
        so variants of one model (the default suite's methods) share their weights.
        overwrite: replace a bundle folder vrfam-rt wrote at `path` (and nothing else:
        fileio.check_replaceable); command: what made it, recorded for that check.
        """
        path = Path(path)
        shared = {}
        if share is not None:
            share = Path(share)
            shared = {e["sha256"]: os.path.relpath(share / e["file"], path)
                      for e in manifests.read(share, "bundle")["files"].values()}
        with staged_dir(path, "bundle", command or "Bundle.save", overwrite, "path",
                        "overwrite") as tmp:
            files, hashes = {}, {}
            for name, module in self.modules.items():
                data = _serialise(module)
                hashes[name] = sha256_bytes(data)
                file = shared.get(hashes[name])
                if file is None:
                    file = f"{name}.safetensors"
                    (tmp / file).write_bytes(data)
                files[name] = {"file": Path(file).as_posix(), "sha256": hashes[name],
                               "keys": len(module.state_dict()),
                               "parameters": sum(p.numel() for p in module.parameters())}
            manifest = {
                "created_by": f"vrfam-rt {__version__}",
                "config": self.config.to_dict(),
                "attributes": list(self.attributes),
                "classifier_attributes": list(self.config.classifier.attributes),
                "transformer": {"methods": self.transformer_methods,
                                "layers": list(self.config.transformer.layers)},
                "files": files,
                "provenance": self.provenance,
            }
            manifests.write(tmp, "bundle", manifest)
        self._hashes = hashes
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, components: tuple[str, ...] | None = None,
             device: str | torch.device = "cpu", verify: bool = True) -> "Bundle":
        """Read a bundle directory, checking format, hashes, keys and shapes."""
        from safetensors.torch import load_file

        path = Path(path)
        manifest = manifests.read(path, "bundle")
        config = ModelConfig.from_dict(manifest["config"])
        methods = manifest.get("transformer", {}).get("methods")
        modules = {}
        for name, entry in manifest["files"].items():
            if name not in COMPONENTS:
                raise VrfamError(f"{path / MANIFEST}: unknown component {name!r}")
            if components is not None and name not in components:
                continue
            file = path / entry["file"]
            if not file.is_file():
                raise VrfamError(f"{file} is missing; the bundle is incomplete, re-create it")
            if verify:
                digest = sha256_file(file)
                if digest != entry["sha256"]:
                    raise VrfamError(f"{file} is corrupt: sha256 {digest[:12]}... does not match "
                                     f"{MANIFEST} ({entry['sha256'][:12]}...); re-create the bundle")
            try:
                state = load_file(file)
            except Exception as exc:  # safetensors raises its own error types
                raise VrfamError(f"{file} is not a readable safetensors file ({exc})") from None
            module = models.build(config, name, transformer_methods=methods)
            modules[name] = load_state(module, state, str(file)).to(device)
        bundle = cls(config, modules, manifest.get("provenance"), methods)
        bundle._hashes = {n: e["sha256"] for n, e in manifest["files"].items()}
        bundle.path = path
        return bundle
