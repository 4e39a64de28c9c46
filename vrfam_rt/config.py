"""Model configurations as data.

A config is a tree of frozen dataclasses that round-trips through JSON. The named
configs (`ffhq-1024`, `tiny`) live as JSON files in `vrfam_rt/configs/`; nothing in
the code branches on a config's name.
"""
from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from typing import Any

from vrfam_rt.errors import VrfamError

ALPHA_LIMIT = 1.5      # the paper's test-time range of the editing strength

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)


def stylegan2_channels(size: int, channel_multiplier: int = 2) -> tuple[int, ...]:
    """Channels per resolution 4, 8, ..., size of the reference StyleGAN2 table."""
    table = {4: 512, 8: 512, 16: 512, 32: 512}
    for res in (64, 128, 256, 512, 1024, 2048):
        table[res] = 16384 * channel_multiplier // res
    return tuple(table[2**k] for k in range(2, int(math.log2(size)) + 1))


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    size: int = 1024                      # output resolution, a power of two >= 8
    style_dim: int = 512                  # width of z, w and every style vector
    n_mlp: int = 8                        # mapping-network depth
    channels: tuple[int, ...] = stylegan2_channels(1024)  # per resolution 4..size
    lr_mlp: float | tuple[float, ...] = 0.01  # equalized-lr multiplier of the mapping layers
    #                                      (one for all, or one per layer)
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    # Added for NVIDIA's network pickles; written to JSON only when set (LATER_FIELDS), so
    # the configs and digests of earlier bundles stay as they were.
    z_dim: int | None = None              # width of z when it is not style_dim
    conv_clamp: float | None = None       # activations and toRGB clamped to +-this, always
    w_avg: bool = False                   # keeps the tracked mean W (truncation centre)

    def __post_init__(self):
        log2 = math.log2(self.size)
        if self.size < 8 or log2 != int(log2):
            raise VrfamError(f"generator size {self.size} is not a power of two >= 8")
        if len(self.channels) != int(log2) - 1:
            raise VrfamError(
                f"generator channels {self.channels} must list one width per resolution "
                f"4..{self.size} ({int(log2) - 1} values)")
        if isinstance(self.lr_mlp, tuple) and len(self.lr_mlp) != self.n_mlp:
            raise VrfamError(f"generator lr_mlp {self.lr_mlp} must give one multiplier per "
                             f"mapping layer ({self.n_mlp} values) or one for all")

    @property
    def latent_dim(self) -> int:
        """Width of z, the mapping network's input."""
        return self.style_dim if self.z_dim is None else self.z_dim

    @property
    def layer_lr(self) -> tuple[float, ...]:
        """The equalized-lr multiplier of each mapping layer."""
        return self.lr_mlp if isinstance(self.lr_mlp, tuple) else (self.lr_mlp,) * self.n_mlp

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Number of W+ style vectors the synthesis network consumes."""
        return 2 * self.log_size - 2

    def channel(self, res: int) -> int:
        return self.channels[int(math.log2(res)) - 2]


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    input_size: int = 256                 # S of the [B,3,S,S] input
    units: tuple[int, ...] = (3, 4, 14, 3)          # IR-SE units per stage (50 layers)
    channels: tuple[int, ...] = (64, 128, 256, 512)  # IR-SE width per stage
    mode: str = "e4e"                     # "e4e" (progressive deltas) or "psp"
    progressive_stage: int | None = None  # e4e: deltas 1..stage are added; None = all

    def __post_init__(self):
        if self.mode not in ("e4e", "psp"):
            raise VrfamError(f"encoder mode {self.mode!r} is not 'e4e' or 'psp'")
        if len(self.units) != 4 or len(self.channels) != 4:
            raise VrfamError("encoder units and channels need one value per IR-SE stage (4)")
        if self.input_size % 64 or self.input_size < 64:
            raise VrfamError(f"encoder input size {self.input_size} is not a multiple of 64")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    hidden: tuple[int, ...] = (2048, 512)  # LCNet widths between flattened W+ and logits
    attributes: tuple[str, ...] = CELEBA_ATTRIBUTES


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    attributes: tuple[str, ...] = ("Smiling", "Eyeglasses")  # fused order of application
    method: str = "nonlinear"             # "linear" (released F_mapping) or "nonlinear" (paper)
    layers: tuple[int, int] = (0, 11)     # [start, stop) of the edited W+ layers
    hidden: int = 512                     # nonlinear form: width of the 3-layer MLP

    def __post_init__(self):
        if self.method not in ("linear", "nonlinear"):
            raise VrfamError(f"transformer method {self.method!r} is not 'linear' or 'nonlinear'")
        if len(set(self.attributes)) != len(self.attributes):
            raise VrfamError(f"transformer attributes repeat a name: {list(self.attributes)}")


@dataclasses.dataclass(frozen=True)
class IdentityConfig:
    input_size: int = 112                 # ArcFace input after crop and pool
    units: tuple[int, ...] = (3, 4, 14, 3)
    channels: tuple[int, ...] = (64, 128, 256, 512)
    embed_dim: int = 512
    crop: tuple[int, int, int, int] = (35, 223, 32, 220)  # rows, cols of a 256 image
    crop_reference: int = 256             # image size the crop box refers to


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str
    generator: GeneratorConfig
    encoder: EncoderConfig
    classifier: ClassifierConfig
    transformer: TransformerConfig
    identity: IdentityConfig | None = None

    def __post_init__(self):
        start, stop = self.transformer.layers
        if not 0 <= start < stop <= self.generator.n_latent:
            raise VrfamError(
                f"transformer layers {self.transformer.layers} outside 0..{self.generator.n_latent}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name, unset in LATER_FIELDS.items():
            if data["generator"][name] == unset:
                del data["generator"][name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        try:
            identity = data.get("identity")
            return cls(
                name=data["name"],
                generator=_build(GeneratorConfig, data["generator"]),
                encoder=_build(EncoderConfig, data["encoder"]),
                classifier=_build(ClassifierConfig, data["classifier"]),
                transformer=_build(TransformerConfig, data["transformer"]),
                identity=None if identity is None else _build(IdentityConfig, identity),
            )
        except (KeyError, TypeError) as exc:
            raise VrfamError(f"model config is malformed: {exc}") from None

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


# GeneratorConfig fields added after bundles were first written, with the value that means
# "not set": to_dict leaves them out then, so an earlier bundle's config reads back the same.
LATER_FIELDS = {"z_dim": None, "conv_clamp": None, "w_avg": False}


def _build(cls, data: dict[str, Any]):
    """Dataclass from JSON data; lists become tuples so configs stay hashable."""
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {sorted(unknown)[0]!r}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def config_names() -> list[str]:
    files = resources.files("vrfam_rt").joinpath("configs").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".json"))


def load_config(name: str) -> ModelConfig:
    """A named config shipped with the package (`ffhq-1024`, `tiny`)."""
    if name not in config_names():
        raise VrfamError(f"unknown model config {name!r}; choose one of {config_names()}")
    text = resources.files("vrfam_rt").joinpath("configs", f"{name}.json").read_text()
    return ModelConfig.from_dict(json.loads(text))


def as_config(config: ModelConfig | str) -> ModelConfig:
    return config if isinstance(config, ModelConfig) else load_config(config)
