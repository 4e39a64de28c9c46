"""NVIDIA's StyleGAN2 network pickles, read without running the code they carry.

stylegan2-ada-pytorch (and the StyleGAN2 configs of stylegan3) pickle every network as a
"persistent object": unpickling calls `torch_utils.persistence._reconstruct_persistent_obj(meta)`,
which exec()s the Python source stored in `meta["module_src"]`. Here an unpickler resolves
only the globals these files use (ALLOWED); the persistence hook becomes `Persistent`, which
keeps the object's class name, state and init kwargs and never reads `module_src`; tensor
storages, which plain pickle hands to a full `torch.load`, are read with
`torch.load(weights_only=True)`. Any other global is refused before it is called.

The generator found under a snapshot's key (`G_ema` by default) is then mapped onto
models.stylegan2.Generator (rosinality's key layout), its configuration taken from the
weights and the pickle's attributes. Format and mapping facts: shared/UPSTREAM.md,
"NVIDIA network pickles".
"""
from __future__ import annotations

import collections
import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vrfam_rt.config import GeneratorConfig
from vrfam_rt.errors import VrfamError
from vrfam_rt.fileio import sha256_file

State = dict[str, torch.Tensor]
PICKLE_KEYS = ("G_ema", "G")          # a snapshot's generators: the averaged one, the trained one
LAYOUT = "NVIDIA stylegan2-ada-pytorch network pickle"


# ---- the restricted unpickler -------------------------------------------------------------------
class Refused(pickle.UnpicklingError):
    """The pickle asks for something outside the allow-list; `what` names it (a global's
    module.name when `call` is set)."""

    def __init__(self, what: str, call: bool = False):
        super().__init__(what)
        self.what, self.call = what, call


@dataclass
class Persistent:
    """One persistent object of the pickle, as data: NVIDIA's class name and the nn.Module
    state (`_parameters`, `_buffers`, `_modules`, `_init_kwargs`, plain attributes)."""

    class_name: str
    state: dict[str, Any]

    def attr(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)

    @property
    def modules(self) -> dict[str, Any]:
        return dict(self.state.get("_modules") or {})

    def tensor(self, name: str) -> torch.Tensor | None:
        """A parameter or buffer of this object itself, as a float32 tensor (None if absent)."""
        for table in ("_parameters", "_buffers"):
            value = (self.state.get(table) or {}).get(name)
            if isinstance(value, torch.Tensor):
                return value.detach().float()
        return None

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})


class _EasyDict(dict):
    """dnnlib.util.EasyDict read as the dict it is (attribute access is all it adds)."""


def _persistent(meta: Any) -> Persistent:
    """Stands in for torch_utils.persistence._reconstruct_persistent_obj: keeps the state,
    never touches meta['module_src']."""
    if not isinstance(meta, dict) or meta.get("type") != "class" \
            or not isinstance(meta.get("state"), dict):
        raise Refused("a persistent object that is not a class with a state")
    return Persistent(str(meta.get("class_name")), dict(meta["state"]))


def _load_from_bytes(data: Any) -> Any:
    """torch.storage._load_from_bytes as it should be: a weights-only torch.load."""
    if not isinstance(data, (bytes, bytearray)):
        raise Refused("torch.storage._load_from_bytes of something other than bytes")
    storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise Refused("stored bytes that do not hold a tensor storage")
    return storage


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, requires_grad: bool,
                    backward_hooks: Any, *metadata: Any) -> torch.Tensor:
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)) \
            or backward_hooks:
        raise Refused("a tensor rebuilt from something other than a storage, or with hooks")
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
                                           collections.OrderedDict(), *metadata)


def _rebuild_parameter(data: Any, requires_grad: bool, backward_hooks: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor) or backward_hooks:
        raise Refused("a parameter rebuilt from something other than a tensor, or with hooks")
    return torch._utils._rebuild_parameter(data, requires_grad, collections.OrderedDict())


def _numpy_scalar(dtype: Any, data: Any = None) -> float | int | complex:
    """numpy.core.multiarray.scalar for numeric dtypes only, as the Python number."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" \
            or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise Refused("a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


class _Array(np.ndarray):
    """numpy's pickled arrays (TensorFlow pickles hold their variables so), numeric only."""

    def __setstate__(self, state: Any) -> None:
        dtype = state[-3] if isinstance(state, tuple) and len(state) in (4, 5) else None
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" \
                or not isinstance(state[-1], bytes):
            raise Refused("a numpy array that is not plain numbers")
        super().__setstate__(state)


class _NdarrayName:
    """numpy.ndarray as a name only: what numpy's _reconstruct is handed, never called."""


def _reconstruct_array(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if cls is not _NdarrayName:
        raise Refused("numpy's _reconstruct of something other than an ndarray")
    return _Array((0,), np.uint8)


class TFNetwork:
    """dnnlib.tflib.network.Network of NVlabs/stylegan2 (TensorFlow), as data: its pickled
    state (static_kwargs, components, variables as numpy arrays); the TensorFlow source in
    `build_module_src` is never read."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not isinstance(state.get("variables"), list):
            raise Refused("a TensorFlow network without variables")
        self.state = state

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("static_kwargs") or {})

    def variables(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Every variable of this network and its components by scope name, as float32."""
        found = {}
        for name, value in self.state["variables"]:
            found[prefix + str(name)] = torch.from_numpy(np.array(value, dtype=np.float32))
        for name, component in (self.state.get("components") or {}).items():
            if isinstance(component, TFNetwork):
                found |= component.variables(f"{prefix}{name}/")
        return found


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,                            # protocol 3: nn.Module's buffer set
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,  # written under numpy 2
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_array,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_array,
    ("numpy", "ndarray"): _NdarrayName,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        raise Refused(f"{module}.{name}", call=True)

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("a persistent id (this is not a network pickle)")


def is_network_pickle(path: Path) -> bool:
    """A plain pickle of protocol 3 or later (torch.save writes a zip, or protocol 2)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and head[1] >= 3


def read_pickle(path: str | Path) -> Any:
    """The object in an NVIDIA network pickle, persistent objects as `Persistent`."""
    path = Path(path)
    if not path.is_file():
        raise VrfamError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            return _Unpickler(f).load()
    except Refused as exc:
        if exc.call:
            raise VrfamError(f"{path}: refused, loading it would call {exc.what}, which "
                             "NVIDIA's network pickles do not use; nothing in the file was run"
                             ) from None
        raise VrfamError(f"{path}: refused, it holds {exc.what}; nothing in the file was run"
                         ) from None
    except Exception as exc:  # truncated files, bad opcodes, wrong arguments to a rebuild
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VrfamError(f"{path} is not a PyTorch checkpoint or network pickle "
                         f"({reason})") from None


# ---- NVIDIA's generator -> models.stylegan2.Generator -------------------------------------------
def _fail(path: Path, message: str) -> VrfamError:
    return VrfamError(f"{path}: {message}")


def _child(obj: Persistent, name: str, path: Path, where: str) -> Persistent:
    child = obj.modules.get(name)
    if not isinstance(child, Persistent):
        raise _fail(path, f"{where} has no '{name}' layer; this is not a StyleGAN2 generator")
    return child


def _get(obj: Persistent, name: str, path: Path, where: str) -> torch.Tensor:
    tensor = obj.tensor(name)
    if tensor is None:
        raise _fail(path, f"{where} has no '{name}' tensor; this is not a StyleGAN2 generator")
    return tensor


def _dense(layer: Persistent, path: Path, where: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(weight [out,in], bias [out], lr multiplier) of a FullyConnectedLayer, as stored:
    it computes x @ (weight * lr / sqrt(in))^T + bias * lr."""
    weight, bias = _get(layer, "weight", path, where), _get(layer, "bias", path, where)
    lr = float(layer.attr("bias_gain", 1.0))
    weight_gain = float(layer.attr("weight_gain", lr / math.sqrt(weight.shape[1])))
    if not math.isclose(weight_gain * math.sqrt(weight.shape[1]), lr, rel_tol=1e-6):
        raise _fail(path, f"{where}: weight gain {weight_gain} is not lr/sqrt(in) for lr {lr}")
    if layer.attr("activation", "linear") != "lrelu":
        raise _fail(path, f"{where} uses activation {layer.attr('activation')!r}; StyleGAN2's "
                    "mapping layers use lrelu")
    return weight, bias, lr


def _affine(layer: Persistent, path: Path, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A style affine as weight [I,D] and bias [I] for a multiplier of 1 (any other is folded
    into the stored values; it is 1 in NVIDIA's configs)."""
    weight, bias = _get(layer, "weight", path, where), _get(layer, "bias", path, where)
    lr = float(layer.attr("bias_gain", 1.0))
    return (weight, bias) if lr == 1.0 else (weight * lr, bias * lr)


class _Converter:
    """Fills the rosinality-layout state of one generator, layer by layer."""

    def __init__(self, path: Path):
        self.path, self.state, self.noise, self.clamps = path, {}, 0, set()

    def styled(self, layer: Persistent, prefix: str, where: str, upsample: bool) -> None:
        weight = _get(layer, "weight", self.path, where)            # [O,I,3,3]
        if layer.attr("activation", "lrelu") != "lrelu" or int(layer.attr("up", 1)) != \
                (2 if upsample else 1):
            raise _fail(self.path, f"{where} is not a StyleGAN2 synthesis layer (activation "
                        f"{layer.attr('activation')!r}, up {layer.attr('up')})")
        aw, ab = _affine(_child(layer, "affine", self.path, where), self.path, f"{where}.affine")
        self.state |= {f"{prefix}.conv.weight": weight[None],
                       f"{prefix}.conv.modulation.weight": aw,
                       f"{prefix}.conv.modulation.bias": ab,
                       f"{prefix}.activate.bias": _get(layer, "bias", self.path, where)}
        strength, noise = layer.tensor("noise_strength"), layer.tensor("noise_const")
        res = int(layer.attr("resolution", 4 * 2 ** ((self.noise + 1) // 2)))
        self.state[f"{prefix}.noise.weight"] = (torch.zeros(1) if strength is None
                                                else strength.reshape(1))
        self.state[f"noises.noise_{self.noise}"] = (torch.zeros(1, 1, res, res) if noise is None
                                                    else noise.reshape(1, 1, *noise.shape[-2:]))
        self.noise += 1
        self.clamps.add(layer.attr("conv_clamp"))
        if upsample:
            self.state[f"{prefix}.conv.blur.kernel"] = self.kernel(layer, where)

    def to_rgb(self, layer: Persistent, prefix: str, where: str, skip: Persistent | None) -> None:
        aw, ab = _affine(_child(layer, "affine", self.path, where), self.path, f"{where}.affine")
        self.state |= {f"{prefix}.conv.weight": _get(layer, "weight", self.path, where)[None],
                       f"{prefix}.conv.modulation.weight": aw,
                       f"{prefix}.conv.modulation.bias": ab,
                       f"{prefix}.bias": _get(layer, "bias", self.path, where).reshape(1, -1, 1, 1)}
        self.clamps.add(layer.attr("conv_clamp"))
        if skip is not None:
            self.state[f"{prefix}.upsample.kernel"] = self.kernel(skip, where)

    def kernel(self, obj: Persistent, where: str) -> torch.Tensor:
        """The 2-D resampling filter [k,k] (normalised to sum 1 in the file) at gain 4."""
        return _get(obj, "resample_filter", self.path, where) * 4


def _blocks(synthesis: Persistent, path: Path) -> list[tuple[int, Persistent]]:
    names = synthesis.modules
    if "input" in names or any(n.startswith("L") and "_" in n for n in names):
        raise _fail(path, "a StyleGAN3 network, not StyleGAN2")
    blocks = sorted((int(n[1:]), b) for n, b in names.items()
                    if n[:1] == "b" and n[1:].isdigit() and isinstance(b, Persistent))
    resolutions = [r for r, _ in blocks]
    if not resolutions or resolutions != [4 * 2**i for i in range(len(resolutions))]:
        raise _fail(path, f"synthesis blocks {[f'b{r}' for r in resolutions]} are not b4, b8, "
                    "..., one per resolution; this is not a StyleGAN2 generator")
    return blocks


def convert_generator(net: Any, path: Path) -> tuple[GeneratorConfig, State]:
    """(config, rosinality-layout state with `w_avg`) of NVIDIA's Generator object."""
    if not isinstance(net, Persistent) or net.class_name != "Generator":
        name = net.class_name if isinstance(net, Persistent) else type(net).__name__
        raise _fail(path, f"holds a {name}, not NVIDIA's StyleGAN2 Generator")
    if int(net.attr("c_dim", 0) or 0) > 0:
        raise _fail(path, f"a conditional network (c_dim {net.attr('c_dim')}); vrfam-rt "
                    "edits unconditional StyleGAN2 generators only")
    if int(net.attr("img_channels", 3)) != 3:
        raise _fail(path, f"the generator makes {net.attr('img_channels')}-channel images, not RGB")
    mapping = _child(net, "mapping", path, "the generator")
    synthesis = _child(net, "synthesis", path, "the generator")
    blocks = _blocks(synthesis, path)

    out = _Converter(path)
    layers = sorted((int(n[2:]), n) for n in mapping.modules if n[:2] == "fc" and n[2:].isdigit())
    lrs = []
    for i, (_, name) in enumerate(layers):
        weight, bias, lr = _dense(mapping.modules[name], path, f"mapping.{name}")
        out.state |= {f"style.{i + 1}.weight": weight, f"style.{i + 1}.bias": bias}
        lrs.append(lr)
    if not layers:
        raise _fail(path, "the mapping network has no fc layers")
    out.state["w_avg"] = _get(mapping, "w_avg", path, "mapping")

    channels = []
    for k, (res, block) in enumerate(blocks):
        where = f"synthesis.b{res}"
        if block.attr("architecture", "skip") != "skip":
            raise _fail(path, f"{where} has the {block.attr('architecture')!r} architecture; "
                        "vrfam-rt's generator is StyleGAN2's 'skip' one")
        if k == 0:
            const = _get(block, "const", path, where)               # [C,4,4]
            out.state["input.input"] = const[None]
            out.styled(_child(block, "conv1", path, where), "conv1", f"{where}.conv1", False)
            out.to_rgb(_child(block, "torgb", path, where), "to_rgb1", f"{where}.torgb", None)
            channels.append(const.shape[0])
            continue
        for j in (0, 1):
            out.styled(_child(block, f"conv{j}", path, where), f"convs.{2 * (k - 1) + j}",
                       f"{where}.conv{j}", upsample=j == 0)
        out.to_rgb(_child(block, "torgb", path, where), f"to_rgbs.{k - 1}", f"{where}.torgb",
                   skip=block)
        channels.append(out.state[f"convs.{2 * (k - 1)}.conv.weight"].shape[1])

    clamps = out.clamps - {None}
    if len(clamps) > 1:
        raise _fail(path, f"its layers clamp at different values {sorted(clamps)}; vrfam-rt "
                    "clamps every layer alike")
    w_dim = out.state["style.1.weight"].shape[0]
    z_dim = out.state["style.1.weight"].shape[1]
    size = blocks[-1][0]
    if int(net.attr("img_resolution", size)) != size:
        raise _fail(path, f"img_resolution {net.attr('img_resolution')} but blocks up to b{size}")
    config = GeneratorConfig(
        size=size, style_dim=w_dim, n_mlp=len(layers), channels=tuple(channels),
        lr_mlp=lrs[0] if len(set(lrs)) == 1 else tuple(lrs),
        z_dim=None if z_dim == w_dim else z_dim,
        conv_clamp=float(clamps.pop()) if clamps else None, w_avg=True)
    return config, out.state


# ---- NVlabs/stylegan2's TensorFlow networks -> the PyTorch layout above -----------------------
TF_KEYS = {"G": 0, "G_ema": 2}       # a TensorFlow snapshot is the tuple (G, D, Gs)
TF_LAYOUT = "NVIDIA stylegan2 TensorFlow network pickle"


def _tf_var(params: dict[str, torch.Tensor], name: str, path: Path) -> torch.Tensor:
    if name not in params:
        raise _fail(path, f"no TensorFlow variable '{name}'; this is not a StyleGAN2 generator")
    return params[name]


def _tf_layer(params: dict[str, torch.Tensor], scope: str, noise: int, res: int, up: bool,
              taps: torch.Tensor, path: Path) -> Persistent:
    """A TensorFlow modulated conv as the SynthesisLayer holding the same function: weight
    [k,k,I,O] -> [O,I,k,k] (the up-conv's flipped), style bias +1 moved into the weights."""
    weight = _tf_var(params, f"{scope}/weight", path)
    if up:
        weight = weight.flip([0, 1])
    affine = Persistent("FullyConnectedLayer", {"_parameters": {
        "weight": _tf_var(params, f"{scope}/mod_weight", path).t(),
        "bias": _tf_var(params, f"{scope}/mod_bias", path) + 1}})
    return Persistent("SynthesisLayer", {
        "_parameters": {"weight": weight.permute(3, 2, 0, 1),
                        "bias": _tf_var(params, f"{scope}/bias", path),
                        "noise_strength": params.get(f"{scope}/noise_strength")},
        "_buffers": {"noise_const": params.get(f"synthesis/noise{noise}"),
                     "resample_filter": taps},
        "_modules": {"affine": affine}, "up": 2 if up else 1, "resolution": res,
        "activation": "lrelu"})


def _tf_torgb(params: dict[str, torch.Tensor], scope: str, path: Path) -> Persistent:
    affine = Persistent("FullyConnectedLayer", {"_parameters": {
        "weight": _tf_var(params, f"{scope}/mod_weight", path).t(),
        "bias": _tf_var(params, f"{scope}/mod_bias", path) + 1}})
    return Persistent("ToRGBLayer", {
        "_parameters": {"weight": _tf_var(params, f"{scope}/weight", path).permute(3, 2, 0, 1),
                        "bias": _tf_var(params, f"{scope}/bias", path)},
        "_modules": {"affine": affine}})


def tf_generator(net: TFNetwork, path: Path) -> Persistent:
    """NVlabs/stylegan2's TensorFlow generator as the stylegan2-ada-pytorch Generator it
    corresponds to (the variable mapping of stylegan2-ada-pytorch's legacy.py)."""
    if not isinstance(getattr(net, "state", None), dict):
        raise _fail(path, "a TensorFlow network pickled without its variables")
    kwargs = net.kwargs
    if int(kwargs.get("label_size") or 0) > 0:
        return Persistent("Generator", {"c_dim": kwargs["label_size"]})
    params = net.variables()
    if any(name.startswith("synthesis/ToRGB_lod") for name in params):
        raise _fail(path, "a TensorFlow generator of the 'orig' architecture; vrfam-rt's "
                    "generator is StyleGAN2's 'skip' one")
    for key in ("nonlinearity", "mapping_nonlinearity"):
        if kwargs.get(key, "lrelu") != "lrelu":
            raise _fail(path, f"{key} {kwargs[key]!r}; StyleGAN2 uses lrelu")
    lr = float(kwargs.get("mapping_lrmul", 0.01))
    taps = torch.tensor(kwargs.get("resample_kernel") or (1, 3, 3, 1), dtype=torch.float32)
    taps = taps[:, None] * taps[None, :]
    taps = taps / taps.sum()
    fcs = {}
    for i in range(sum(1 for n in params if n.startswith("mapping/Dense") and
                       n.endswith("/weight"))):
        weight = _tf_var(params, f"mapping/Dense{i}/weight", path).t()     # [out,in]
        fcs[f"fc{i}"] = Persistent("FullyConnectedLayer", {
            "_parameters": {"weight": weight, "bias": _tf_var(params, f"mapping/Dense{i}/bias",
                                                             path)},
            "bias_gain": lr, "weight_gain": lr / math.sqrt(weight.shape[1]),
            "activation": "lrelu"})
    mapping = Persistent("MappingNetwork", {"_modules": fcs, "_buffers": {
        "w_avg": _tf_var(params, "dlatent_avg", path)}})
    blocks = {}
    for res in sorted(int(n.split("/")[1].split("x")[0]) for n in params
                      if n.startswith("synthesis/") and n.endswith("/ToRGB/weight")):
        scope, log2 = f"synthesis/{res}x{res}", int(math.log2(res))
        if res == 4:
            modules = {"conv1": _tf_layer(params, f"{scope}/Conv", 0, 4, False, taps, path)}
            block = {"_parameters": {"const": _tf_var(params, f"{scope}/Const/const", path)[0]}}
        else:
            modules = {"conv0": _tf_layer(params, f"{scope}/Conv0_up", 2 * log2 - 5, res, True,
                                          taps, path),
                       "conv1": _tf_layer(params, f"{scope}/Conv1", 2 * log2 - 4, res, False,
                                          taps, path)}
            block = {}
        modules["torgb"] = _tf_torgb(params, f"{scope}/ToRGB", path)
        blocks[f"b{res}"] = Persistent("SynthesisBlock", block | {
            "_modules": modules, "_buffers": {"resample_filter": taps},
            "architecture": kwargs.get("architecture", "skip")})
    synthesis = Persistent("SynthesisNetwork", {"_modules": blocks})
    return Persistent("Generator", {"_modules": {"mapping": mapping, "synthesis": synthesis},
                                    "_init_kwargs": kwargs, "c_dim": 0,
                                    "img_channels": int(kwargs.get("num_channels", 3))})


def read_generator(path: str | Path, pickle_key: str | None = None
                   ) -> tuple[GeneratorConfig, State, dict[str, Any]]:
    """(config, state, provenance) of the generator under `pickle_key` (default G_ema; Gs of
    a TensorFlow snapshot) of an NVIDIA network pickle; the provenance records the file, its
    sha256, the key and the network's init kwargs."""
    path = Path(path)
    key = pickle_key or PICKLE_KEYS[0]
    data = read_pickle(path)
    try:
        net, layout, key_used = _generator(data, key, pickle_key is not None, path)
        config, state = convert_generator(net, path)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise _fail(path, f"not a StyleGAN2 generator vrfam-rt can read "
                    f"({type(exc).__name__}: {reason})") from None
    record = {"source": "import", "layout": layout, "file": path.name,
              "sha256": sha256_file(path), "pickle_key": key_used,
              "init_kwargs": _plain(net.init_kwargs)}
    return config, state, record


def _generator(data: Any, key: str, key_given: bool, path: Path
               ) -> tuple[Persistent, str, str | None]:
    """(network, layout, key it was found under) of what the pickle holds."""
    if isinstance(data, tuple) and data and all(isinstance(n, TFNetwork) for n in data):
        if key not in TF_KEYS or len(data) != 3:
            raise _fail(path, f"a TensorFlow snapshot holds (G, D, Gs): key {key!r} is not "
                        f"one of {sorted(TF_KEYS)}")
        return tf_generator(data[TF_KEYS[key]], path), TF_LAYOUT, key
    if isinstance(data, TFNetwork):
        data = tf_generator(data, path)
        layout = TF_LAYOUT
    else:
        layout = LAYOUT
    if isinstance(data, dict):
        networks = [k for k, v in data.items() if isinstance(v, Persistent)]
        if not isinstance(data.get(key), Persistent):
            raise _fail(path, f"no network under key {key!r}; it holds {networks}")
        return data[key], layout, key
    if key_given:
        raise _fail(path, f"holds one network, not a snapshot with key {key!r}")
    return data, layout, None


def _plain(value: Any) -> Any:
    """JSON-ready copy of init kwargs (dicts, lists and scalars; anything else as text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
