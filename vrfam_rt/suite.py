"""Model suites: one bundle per editing method over one generator, and the default one.

A suite is a folder with `suite.json` and one bundle folder per method (`vrfam`,
`interfacegan`, `interfacegan-conditional`, `e4e-linear`). The first bundle holds its
weight files; the others name the files they share with it by relative path, so the
four methods of the default suite cost little more than one bundle.

The default suite ships in the package (`vrfam_rt/assets/default/`), trained on the
procedural faces by `scripts/build_default_bundle.sh`; its `vrfam` bundle is what
commands use when no --bundle or --config is given, and `faces/example.png` is the
demo face (`make demo`).

`open_bundle` is the one answer to "which model" for every front end: the CLI's
--bundle/--method/--config/--seed, `EditPipeline.from_bundle` and `vrfam-rt serve`'s
Triton model all call it.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from vrfam_rt.errors import UsageError, VrfamError

METHODS = ("vrfam", "interfacegan", "interfacegan-conditional", "e4e-linear")
MANIFEST = "suite.json"
BUILD_HINT = ("build it with scripts/build_default_bundle.sh (INSTALL=1), or give `bundle=` "
              "a bundle folder")


def default_suite() -> Path:
    """The shipped suite folder (inside the installed package)."""
    return Path(str(resources.files("vrfam_rt").joinpath("assets", "default")))


def is_suite(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def member(suite: Path | None = None, method: str = "vrfam") -> Path:
    """The bundle folder of `method` in `suite` (default: the shipped suite)."""
    if method not in METHODS:
        raise UsageError(f"`method={method!r}` is not one of {', '.join(METHODS)}")
    where = Path(suite) if suite is not None else default_suite()
    if not is_suite(where):
        what = "the default model suite is not installed" if suite is None else \
            f"{where} is not a model suite ({MANIFEST} not found)"
        raise VrfamError(f"{what}; {BUILD_HINT}")
    path = where / method
    if not (path / "bundle.json").is_file():
        raise VrfamError(f"suite {where} has no {method} bundle; {BUILD_HINT}")
    return path


def resolve(path: Path | None, method: str | None = None) -> Path:
    """The bundle folder a `bundle=` path names: a bundle as given, or a suite's member
    (`method`, default vrfam); None means the shipped suite."""
    if path is None or is_suite(path):
        return member(path, method or "vrfam")
    if method:
        raise UsageError(f"`method={method!r}` picks a bundle of a model suite; {path} is a "
                         "single bundle (leave out `method=`)")
    return Path(path)


def open_bundle(bundle=None, *, method: str | None = None, config=None,
                seed: int | None = None, components: tuple[str, ...] | None = None):
    """The model every front end means: a Bundle from "which model" as Python arguments.

    bundle: a Bundle (returned as it is), a bundle folder, a model suite folder (its
        `method` member: vrfam, interfacegan, interfacegan-conditional, e4e-linear;
        default vrfam), or None: the shipped default suite's member;
    config: a shipped config name (or a ModelConfig) instead: a random bundle of it,
        seeded by `seed` (default 0; the same config and seed give the same weights);
    components: the networks to load or make (None: all a saved bundle holds,
        Bundle.random's default set for a random one); a given Bundle is returned whole.
    Arguments that contradict each other raise UsageError naming them; a folder that
    holds no readable bundle raises VrfamError.
    """
    from vrfam_rt.bundle import Bundle
    from vrfam_rt.config import ModelConfig, config_names

    if method is not None and not isinstance(method, str):
        raise TypeError(f"method must be a name ({', '.join(METHODS)}), not "
                        f"{type(method).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int, not {type(seed).__name__}")
    if config is not None:
        if bundle is not None:
            raise UsageError("give `bundle=` or `config=`, not both")
        if method is not None:
            raise UsageError(f"`method={method!r}` picks a bundle of a model suite; `config=` "
                             "makes a random one (leave out `method=`)")
        if not isinstance(config, ModelConfig) and config not in config_names():
            raise UsageError(f"`config={config!r}` is not a shipped config; choose one of "
                             f"{', '.join(config_names())}")
        return Bundle.random(config, seed=seed or 0,
                             **({} if components is None else {"components": components}))
    if seed is not None:
        raise UsageError(f"`seed={seed}` seeds the random bundle of a `config=`; a saved "
                         "bundle has its weights (leave out `seed=`)")
    if isinstance(bundle, Bundle):
        if method is not None:
            raise UsageError(f"`method={method!r}` picks a bundle of a model suite; `bundle=` "
                             "is a Bundle already (give the suite's folder instead)")
        return bundle
    if bundle is not None and not isinstance(bundle, (str, os.PathLike)):
        raise TypeError("bundle must be a Bundle, a bundle or model suite folder, or None "
                        f"(the shipped default suite), not {type(bundle).__name__}")
    return Bundle.load(resolve(bundle, method), components=components)


def method_of(bundle) -> str:
    """The editing method of a bundle: its member name in a model suite (vrfam,
    interfacegan, ...), else its transformers' form (nonlinear, linear; mixed)."""
    if bundle.path is not None and is_suite(Path(bundle.path).parent) \
            and Path(bundle.path).name in METHODS:
        return Path(bundle.path).name
    methods = set(bundle.transformer_methods.values())
    return methods.pop() if len(methods) == 1 else ("mixed" if methods else "none")


PHOTO_NOTE = ("the default model is trained on synthetic 64-px faces, so a photo comes out "
              "as a synthetic face; to edit photos, import the public FFHQ weights "
              "(README, \"Editing photos\") and pass --bundle")


def trained_on_synthetic_faces(bundle) -> bool:
    """Whether the bundle's generator was trained on the procedural faces (as the
    shipped default model's is), by its provenance."""
    return _synthetic_provenance(bundle.provenance)


def _synthetic_provenance(provenance: dict) -> bool:
    """A bundle's provenance (as in bundle.json) says its generator learned procedural faces."""
    generator = provenance.get("generator") or {}
    return "--data synth" in str(generator.get("command", ""))


def synthetic_note(bundle) -> str | None:
    """The line to print when such a bundle has edited real photos, else None."""
    return PHOTO_NOTE if trained_on_synthetic_faces(bundle) else None


def capabilities(components, attributes) -> tuple[str, list[str]]:
    """What a bundle of these networks can do, and what each missing file would add."""
    components = set(components)
    can = ["render W+ codes"] if "generator" in components else []
    missing = []
    if {"encoder", "generator"} <= components:
        can.append("reconstruct photos")
    else:
        missing.append("--e4e or --psp FILE (an encoder) to invert photos")
    if attributes and {"encoder", "generator", "transformer"} <= components:
        can.append(f"edit {', '.join(attributes)}")
    elif not attributes:
        missing.append("--transformer ATTR=tnet_<idx>.pth.tar (a latent transformer per "
                       "attribute) to edit")
    if "identity" in components:
        can.append("score identity (ArcFace)")
    return "; ".join(can) or "nothing", missing


def describe_bundle(path: Path | None = None, method: str | None = None) -> dict:
    """What `vrfam-rt info` says of a bundle (a folder, a suite's `method` member, or the
    shipped default), read from its manifest with no weights loaded."""
    from vrfam_rt import manifests
    from vrfam_rt.config import ModelConfig

    folder = resolve(path, method)
    bundle = manifests.read(folder, "bundle")
    config, files = ModelConfig.from_dict(bundle["config"]), bundle["files"]
    g = config.generator
    can, missing = capabilities(files, bundle["attributes"])
    methods = bundle.get("transformer", {}).get("methods") or {}
    facts = {
        "path": str(folder),
        "networks": ", ".join(f"{name} ({entry['parameters'] / 1e6:.2f} M parameters)"
                              for name, entry in files.items()),
        "config": f"{config.name}: {g.size} px generator, W+ {g.n_latent}x{g.style_dim}, "
                  f"{config.encoder.input_size} px encoder input",
        "attributes": ", ".join(bundle["attributes"]) or "none",
        "method": ", ".join(sorted(set(methods.values()))) or "none",
        "provenance": "; ".join(f"{name}: {_source(entry)}" for name, entry
                                in (bundle.get("provenance") or {}).items()),
        "can": can,
    }
    if is_suite(folder.parent) and folder.name in METHODS:
        suite = suite_manifest(folder.parent)
        facts["suite"] = (f"{folder.parent} ({', '.join(suite.get('methods', {}))}; "
                          f"--method picks one, default vrfam)")
        facts["method"] = f"{folder.name} ({facts['method']} latent transformer)"
    if missing:
        facts["add"] = "; ".join(missing)
    if _synthetic_provenance(bundle.get("provenance", {})):
        facts["trained on"] = ("procedural synthetic faces (scripts/build_default_bundle.sh); "
                               "for photos import FFHQ weights (README, \"Editing photos\")")
    return facts


def _source(entry: dict) -> str:
    """A provenance entry in a few words: imported from which file, trained by what."""
    if not isinstance(entry, dict):
        return str(entry)
    if entry.get("source") == "import":
        return f"imported from {entry.get('file')} ({entry.get('layout')})"
    if entry.get("source") == "trained":
        command = " ".join(str(entry.get("command", "")).split()[:3])
        return f"trained, {entry.get('steps')} steps ({command} ...)"
    return ", ".join(f"{k} {v}" for k, v in entry.items() if not isinstance(v, dict))


def describe_default() -> dict:
    """describe_bundle of the shipped default model, or its status when it is missing."""
    try:
        return describe_bundle(None)
    except VrfamError as exc:
        return {"status": str(exc)}


def suite_manifest(suite: Path) -> dict:
    """A suite folder's suite.json."""
    import json

    return json.loads((Path(suite) / MANIFEST).read_text())
