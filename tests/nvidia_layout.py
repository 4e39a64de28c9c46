"""Tiny stand-ins of NVIDIA's StyleGAN2 network pickles, and a forward of their weights.

`network` builds a generator with the attribute, parameter and buffer names of
stylegan2-ada-pytorch's networks (facts: shared/UPSTREAM.md, "NVIDIA network pickles");
`write` pickles it as NVIDIA's snapshots are: every network a persistent object
(`torch_utils.persistence._reconstruct_persistent_obj(meta)` with the module's source in
`meta["module_src"]`), init kwargs holding `dnnlib.util.EasyDict`s, tensors as plain
pickle writes them (storages as bytes). `write_tf` pickles the same weights as
NVlabs/stylegan2's TensorFlow snapshots: (G, D, Gs) `dnnlib.tflib.network.Network`
objects holding numpy variables under TensorFlow names and layouts (the inverse of the
variable mapping in stylegan2-ada-pytorch's legacy.py). None of NVIDIA's code is here:
those globals exist only while a file is written, so loading it can never reach them.

`mapping` and `synthesis` compute the networks from these objects' own tensors by the
StyleGAN2 formulas (modulation, demodulation, FIR resampling as zero insertion + padding
+ convolution), independently of vrfam_rt's generator.
"""
from __future__ import annotations

import contextlib
import math
import pickle
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HARMLESS_SRC = "raise RuntimeError('module_src was executed')\n"


class EasyDict(dict):
    pass


EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"


def _reconstruct_persistent_obj(meta):
    raise RuntimeError("the test stand-in of NVIDIA's persistence hook ran")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class TFNetwork:
    """Pickles as dnnlib.tflib.network.Network does: its __getstate__ dict."""

    def __init__(self, name: str, variables: dict, components: dict | None = None,
                 static_kwargs: dict | None = None):
        self.name, self.variables = name, variables
        self.components, self.static_kwargs = dict(components or {}), dict(static_kwargs or {})

    def __getstate__(self):
        return dict(version=4, name=self.name, static_kwargs=self.static_kwargs,
                    components=self.components, build_module_src=HARMLESS_SRC,
                    build_func_name="G_main", variables=list(self.variables.items()))


TFNetwork.__module__, TFNetwork.__qualname__ = "dnnlib.tflib.network", "Network"


@contextlib.contextmanager
def _nvidia_globals():
    """torch_utils.persistence, dnnlib.util and dnnlib.tflib.network as importable names,
    for pickle.dump only."""
    names = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util", "dnnlib.tflib",
             "dnnlib.tflib.network")
    fakes = {name: types.ModuleType(name) for name in names}
    fakes["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    fakes["dnnlib.util"].EasyDict = EasyDict
    fakes["dnnlib.tflib.network"].Network = TFNetwork
    for name in names:
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(fakes[parent], child, fakes[name])
    assert not set(fakes) & set(sys.modules)
    sys.modules.update(fakes)
    try:
        yield
    finally:
        for name in fakes:
            del sys.modules[name]


class Net(torch.nn.Module):
    """A persistent network: pickles as NVIDIA's decorator does (class name, state)."""

    def __init__(self, class_name: str, init_kwargs: dict | None = None, **attrs):
        super().__init__()
        self._class, self._init_args, self._init_kwargs = class_name, (), dict(init_kwargs or {})
        for name, value in attrs.items():
            setattr(self, name, value)
        self.module_src = HARMLESS_SRC

    def __reduce_ex__(self, protocol):
        state = {k: v for k, v in self.__dict__.items() if k not in ("_class", "module_src")}
        meta = dict(type="class", version=6, module_src=self.module_src,
                    class_name=self._class, state=state)
        return _reconstruct_persistent_obj, (meta,)


@dataclass(frozen=True)
class Spec:
    resolution: int = 64
    z_dim: int = 32
    w_dim: int = 32
    map_layers: int = 8
    lr: float = 0.01                 # mapping learning-rate multiplier
    channel_base: int = 256
    channel_max: int = 32
    num_fp16_res: int = 4
    conv_clamp: float | None = 256.0

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)


def _dense(in_f: int, out_f: int, lr: float, bias_init: float, activation: str) -> Net:
    layer = Net("FullyConnectedLayer", dict(in_features=in_f, out_features=out_f),
                activation=activation, weight_gain=np.float64(lr / np.sqrt(in_f)), bias_gain=lr)
    layer.weight = torch.nn.Parameter(torch.randn(out_f, in_f) / lr)
    bias = torch.full([out_f], bias_init) + 0.2 * torch.randn(out_f)
    layer.bias = torch.nn.Parameter(bias / lr)
    return layer


def _fir() -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = f[:, None] * f[None, :]
    return f / f.sum()


def _layer(spec: Spec, in_ch: int, out_ch: int, res: int, up: int) -> Net:
    layer = Net("SynthesisLayer", dict(in_channels=in_ch, out_channels=out_ch, resolution=res,
                                       up=up),
                resolution=res, up=up, use_noise=True, activation="lrelu", padding=1,
                conv_clamp=spec.conv_clamp, act_gain=math.sqrt(2))
    layer.affine = _dense(spec.w_dim, in_ch, 1.0, 1.0, "linear")
    layer.weight = torch.nn.Parameter(torch.randn(out_ch, in_ch, 3, 3))
    layer.noise_strength = torch.nn.Parameter(torch.tensor(0.3 * float(torch.randn(()))))
    layer.bias = torch.nn.Parameter(0.2 * torch.randn(out_ch))
    layer.register_buffer("resample_filter", _fir())
    layer.register_buffer("noise_const", torch.randn(res, res))
    return layer


def _torgb(spec: Spec, in_ch: int) -> Net:
    layer = Net("ToRGBLayer", dict(in_channels=in_ch, out_channels=3), conv_clamp=spec.conv_clamp,
                weight_gain=1 / np.sqrt(in_ch))
    layer.affine = _dense(spec.w_dim, in_ch, 1.0, 1.0, "linear")
    layer.weight = torch.nn.Parameter(torch.randn(3, in_ch, 1, 1))
    layer.bias = torch.nn.Parameter(0.1 * torch.randn(3))
    return layer


def network(spec: Spec, seed: int = 0) -> Net:
    """NVIDIA's Generator(z_dim, c_dim=0, w_dim, img_resolution, 3) with random weights."""
    torch.manual_seed(seed)
    log2 = int(math.log2(spec.resolution))
    resolutions = [2**i for i in range(2, log2 + 1)]
    num_ws = 2 * log2 - 2
    mapping_kwargs = EasyDict(num_layers=spec.map_layers, lr_multiplier=spec.lr)
    synthesis_kwargs = EasyDict(channel_base=spec.channel_base, channel_max=spec.channel_max,
                                num_fp16_res=spec.num_fp16_res, conv_clamp=spec.conv_clamp)
    kwargs = dict(z_dim=spec.z_dim, c_dim=0, w_dim=spec.w_dim, img_resolution=spec.resolution,
                  img_channels=3, mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs)
    g = Net("Generator", kwargs, z_dim=spec.z_dim, c_dim=0, w_dim=spec.w_dim,
            img_resolution=spec.resolution, img_channels=3, num_ws=num_ws)
    mapping = Net("MappingNetwork", dict(z_dim=spec.z_dim, c_dim=0, w_dim=spec.w_dim, num_ws=num_ws,
                                         **mapping_kwargs),
                  z_dim=spec.z_dim, c_dim=0, w_dim=spec.w_dim, num_ws=num_ws,
                  num_layers=spec.map_layers, w_avg_beta=0.995)
    widths = [spec.z_dim] + [spec.w_dim] * spec.map_layers
    for i in range(spec.map_layers):
        mapping.add_module(f"fc{i}", _dense(widths[i], widths[i + 1], spec.lr, 0.0, "lrelu"))
    mapping.register_buffer("w_avg", torch.randn(spec.w_dim))
    synthesis = Net("SynthesisNetwork", dict(w_dim=spec.w_dim, img_resolution=spec.resolution,
                                             img_channels=3, **synthesis_kwargs),
                    w_dim=spec.w_dim, img_resolution=spec.resolution, img_resolution_log2=log2,
                    img_channels=3, block_resolutions=resolutions, num_ws=num_ws)
    fp16_resolution = max(2 ** (log2 + 1 - spec.num_fp16_res), 8)
    for res in resolutions:
        in_ch, out_ch = spec.channels(max(res // 2, 4)), spec.channels(res)
        in_ch = in_ch if res > 4 else 0
        block = Net("SynthesisBlock", dict(in_channels=in_ch, out_channels=out_ch),
                    in_channels=in_ch, w_dim=spec.w_dim, resolution=res,
                    img_channels=3, is_last=res == spec.resolution, architecture="skip",
                    use_fp16=res >= fp16_resolution, channels_last=False,
                    num_conv=1 if res == 4 else 2, num_torgb=1)
        block.register_buffer("resample_filter", _fir())
        if res == 4:
            block.const = torch.nn.Parameter(torch.randn(out_ch, 4, 4))
        else:
            block.conv0 = _layer(spec, in_ch, out_ch, res, up=2)
        block.conv1 = _layer(spec, out_ch, out_ch, res, up=1)
        block.torgb = _torgb(spec, out_ch)
        synthesis.add_module(f"b{res}", block)
    g.synthesis, g.mapping = synthesis, mapping
    return g.eval().requires_grad_(False)


def write(path: Path, networks: dict, protocol: int = 4) -> Path:
    """A snapshot as NVIDIA's training loop pickles it: {'G', 'D', 'G_ema', ...}."""
    snapshot = dict(training_set_kwargs=EasyDict(resolution=64, use_labels=False), D=None,
                    augment_pipe=None) | networks
    with _nvidia_globals(), open(path, "wb") as f:
        pickle.dump(snapshot, f, protocol=protocol)
    return path


def _tf_variables(g: Net) -> tuple[dict, dict, dict]:
    """(G's own, mapping's, synthesis's) variables of the same function, TensorFlow style:
    dense weights [in,out], conv weights [k,k,I,O] (the up-conv's flipped), style biases
    less the 1 TensorFlow adds, noise [1,1,R,R], scalars as numpy float32."""
    def arr(t):
        return t.detach().numpy().astype(np.float32)

    mapping = {}
    for i in range(g.mapping.num_layers):
        fc = getattr(g.mapping, f"fc{i}")
        mapping |= {f"Dense{i}/weight": arr(fc.weight.t()), f"Dense{i}/bias": arr(fc.bias)}
    synthesis, noise = {}, 0

    def modconv(scope, layer, up):
        nonlocal noise
        weight = layer.weight.permute(2, 3, 1, 0)                 # [k,k,I,O]
        synthesis.update({f"{scope}/weight": arr(weight.flip([0, 1]) if up else weight),
                          f"{scope}/bias": arr(layer.bias),
                          f"{scope}/mod_weight": arr(layer.affine.weight.t()),
                          f"{scope}/mod_bias": arr(layer.affine.bias - 1),
                          f"{scope}/noise_strength": np.float32(layer.noise_strength.item()),
                          f"noise{noise}": arr(layer.noise_const[None, None])})
        noise += 1

    for res in g.synthesis.block_resolutions:
        block, scope = getattr(g.synthesis, f"b{res}"), f"{res}x{res}"
        if res == 4:
            synthesis[f"{scope}/Const/const"] = arr(block.const[None])
            modconv(f"{scope}/Conv", block.conv1, False)
        else:
            modconv(f"{scope}/Conv0_up", block.conv0, True)
            modconv(f"{scope}/Conv1", block.conv1, False)
        synthesis |= {f"{scope}/ToRGB/weight": arr(block.torgb.weight.permute(2, 3, 1, 0)),
                      f"{scope}/ToRGB/bias": arr(block.torgb.bias),
                      f"{scope}/ToRGB/mod_weight": arr(block.torgb.affine.weight.t()),
                      f"{scope}/ToRGB/mod_bias": arr(block.torgb.affine.bias - 1)}
    return {"dlatent_avg": arr(g.mapping.w_avg)}, mapping, synthesis


def write_tf(path: Path, spec: Spec, g: Net, gs: Net, protocol: int = 4) -> Path:
    """(G, D, Gs) as NVlabs/stylegan2 pickles them; D is an empty network here. The
    network must have no conv clamp (TensorFlow StyleGAN2 had none)."""
    if spec.conv_clamp is not None:
        raise ValueError("TensorFlow StyleGAN2 networks have no conv clamp")
    kwargs = dict(num_channels=3, resolution=spec.resolution, label_size=0,
                  latent_size=spec.z_dim, dlatent_size=spec.w_dim, mapping_layers=spec.map_layers,
                  mapping_lrmul=spec.lr, fmap_base=spec.channel_base // 2,
                  fmap_max=spec.channel_max, architecture="skip")

    def network(net, name):
        own, mapping, synthesis = _tf_variables(net)
        return TFNetwork(name, own, {"mapping": TFNetwork("G_mapping", mapping),
                                     "synthesis": TFNetwork("G_synthesis", synthesis)}, kwargs)
    nets = (network(g, "G"), TFNetwork("D", {}), network(gs, "Gs"))
    with _nvidia_globals(), open(path, "wb") as f:
        pickle.dump(nets, f, protocol=protocol)
    return path


# ---- the same weights by the formulas ---------------------------------------------------------
def _lrelu(x: torch.Tensor, clamp: float | None) -> torch.Tensor:
    x = F.leaky_relu(x, 0.2) * math.sqrt(2)
    return x if clamp is None else x.clamp(-clamp, clamp)


def _fc(layer: Net, x: torch.Tensor) -> torch.Tensor:
    return x @ (layer.weight * float(layer.weight_gain)).t() + layer.bias * layer.bias_gain


def mapping(g: Net, z: torch.Tensor) -> torch.Tensor:
    """z [B,Z] -> w [B,D]: normalise the second moment, then lrelu dense layers."""
    x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
    for i in range(g.mapping.num_layers):
        x = _lrelu(_fc(getattr(g.mapping, f"fc{i}"), x), None)
    return x


def _zeros_between(x: torch.Tensor, trailing: bool) -> torch.Tensor:
    """Every sample followed by a zero along H and W (also after the last one if trailing)."""
    b, c, h, w = x.shape
    y = x.new_zeros(b, c, 2 * h, 2 * w)
    y[:, :, ::2, ::2] = x
    return y if trailing else y[:, :, :-1, :-1]


def _fir_filter(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int],
                gain: float) -> torch.Tensor:
    """Pad, then convolve each channel with the 2-D filter f times gain."""
    c = x.shape[1]
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    return F.conv2d(x, (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)


def _modconv(layer: Net, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per sample: weight * style, demodulated; the up layer transposes (zero insertion,
    full padding, flipped kernel) and then low-passes with the FIR filter at gain 4."""
    styles = _fc(layer.affine, w)                                     # [B,I]
    outs = []
    for b in range(x.shape[0]):
        wb = layer.weight * styles[b][None, :, None, None]            # [O,I,3,3]
        wb = wb * (wb.square().sum([1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        xb = x[b:b + 1]
        if layer.up == 2:
            xb = F.conv2d(F.pad(_zeros_between(xb, False), [2, 2, 2, 2]), wb.flip([2, 3]))
            xb = _fir_filter(xb, layer.resample_filter, (1, 1), 4.0)
        else:
            xb = F.conv2d(xb, wb, padding=1)
        outs.append(xb)
    x = torch.cat(outs)
    x = x + layer.noise_const * layer.noise_strength
    return _lrelu(x + layer.bias[None, :, None, None], layer.conv_clamp)


def _rgb(layer: Net, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    styles = _fc(layer.affine, w) * float(layer.weight_gain)          # [B,I]
    y = torch.einsum("oi,bihw->bohw", layer.weight[:, :, 0, 0], x * styles[:, :, None, None])
    y = y + layer.bias[None, :, None, None]
    return y if layer.conv_clamp is None else y.clamp(-layer.conv_clamp, layer.conv_clamp)


def synthesis(g: Net, ws: torch.Tensor) -> torch.Tensor:
    """W+ [B,num_ws,D] -> image [B,3,R,R] with constant noise, in float32."""
    k, img = 0, None
    for res in g.synthesis.block_resolutions:
        block = getattr(g.synthesis, f"b{res}")
        if res == 4:
            x = block.const[None].repeat(ws.shape[0], 1, 1, 1)
        else:
            x = _modconv(block.conv0, x, ws[:, k])
            k += 1
            img = _fir_filter(_zeros_between(img, True), block.resample_filter, (2, 1), 4.0)
        x = _modconv(block.conv1, x, ws[:, k])
        y = _rgb(block.torgb, x, ws[:, k + 1])
        img = y if img is None else img + y
        k += 1
    return img
