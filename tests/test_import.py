"""`vrfam-rt import`: every public layout round-trips, every bad file is refused in one line."""
import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from layouts import write_bare, write_e4e, write_stylegan2
from vrfam_rt import Bundle, models
from vrfam_rt.importers.checkpoints import encoder_config
from vrfam_rt.cli import main
from vrfam_rt.config import load_config

TINY = load_config("tiny")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def imported(tmp_path, *args):
    out = tmp_path / "bundle"
    result = run("import", *args, "--out", out)
    assert result.exit_code == 0, result.output
    return Bundle.load(out)


def max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def source():
    """Tiny networks with non-trivial weights and buffers, standing in for the public files."""
    torch.manual_seed(7)
    linear = dataclasses.replace(TINY.transformer, method="linear", layers=(0, 10),
                                 attributes=("Smiling", "Eyeglasses"))
    config = TINY.replace(transformer=linear)
    nets = {name: models.build(config, name) for name in
            ("generator", "encoder", "classifier", "transformer", "identity")}
    psp = TINY.replace(encoder=dataclasses.replace(TINY.encoder, mode="psp"))
    nets["psp"] = models.build(psp, "encoder")
    with torch.no_grad():
        for net in nets.values():
            for name, t in net.state_dict().items():
                if t.is_floating_point():   # BN statistics, noise weights, latent_avg: all live
                    t.copy_(t + 0.1 * torch.randn_like(t).abs() if "running_var" in name
                            else t + 0.1 * torch.randn_like(t))
    return nets


def images(n=2, size=64):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_stylegan2_file_reproduces_the_reference_forward(source, tmp_path, record_diff):
    g = source["generator"]
    b = imported(tmp_path, "--stylegan2", write_stylegan2(tmp_path / "sg2.pt", g))
    assert b.config.generator == g.config
    w = torch.randn(2, 10, 64)
    with torch.no_grad():
        ours, reference = b.generator(w), g(w, fused=True)
    assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-5)
    record_diff("stylegan2 g_ema (vs fused reference form)", max_diff(ours, reference))
    manifest = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert manifest["provenance"]["generator"]["file"] == "sg2.pt"


def test_stylegan2_training_checkpoint_with_args_imports(source, tmp_path):
    path = write_stylegan2(tmp_path / "train.pt", source["generator"], training=True)
    b = imported(tmp_path, "--stylegan2", path)
    assert torch.equal(b.generator.input.input, source["generator"].input.input)


def test_e4e_file_alone_gives_encoder_and_generator(source, tmp_path, record_diff):
    path = write_e4e(tmp_path / "e4e.pt", source["encoder"], source["generator"])
    b = imported(tmp_path, "--e4e", path)
    x, w = images(), torch.randn(2, 10, 64)
    with torch.no_grad():
        codes, ref_codes = b.encoder(x), source["encoder"](x)
        image, ref_image = b.generator(w), source["generator"](w)
    assert torch.equal(codes, ref_codes) and torch.equal(image, ref_image)
    assert b.config.encoder == TINY.encoder
    record_diff("e4e encoder", max_diff(codes, ref_codes))
    record_diff("e4e decoder", max_diff(image, ref_image))


def test_psp_file_with_a_separate_stylegan2(source, tmp_path, record_diff):
    e = write_e4e(tmp_path / "psp.pt", source["psp"], source["generator"], with_decoder=False)
    g = write_stylegan2(tmp_path / "sg2.pt", source["generator"])
    b = imported(tmp_path, "--psp", e, "--stylegan2", g)
    assert b.config.encoder.mode == "psp"
    with torch.no_grad():
        codes, ref = b.encoder(images()), source["psp"](images())
    assert torch.equal(codes, ref)
    record_diff("psp encoder", max_diff(codes, ref))


def test_a_single_latent_avg_vector_is_broadcast_to_every_layer(source, tmp_path):
    path = write_e4e(tmp_path / "e4e.pt", source["encoder"], source["generator"])
    ckpt = torch.load(path, weights_only=True)
    ckpt["latent_avg"] = ckpt["latent_avg"][0]
    torch.save(ckpt, path)
    b = imported(tmp_path, "--e4e", path)
    assert torch.equal(b.encoder.latent_avg, source["encoder"].latent_avg[0].expand(10, 64))


def test_classifier_transformers_and_arcface(source, tmp_path, record_diff):
    t = source["transformer"]
    args = ["--stylegan2", write_stylegan2(tmp_path / "sg2.pt", source["generator"]),
            "--classifier", write_bare(tmp_path / "lc.pth", source["classifier"]),
            "--arcface", write_bare(tmp_path / "ir.pth", source["identity"],
                                    drop_suffix="num_batches_tracked")]
    for attr, index in (("Smiling", 31), ("Eyeglasses", 15)):
        args += ["--transformer", f"{attr}={write_bare(tmp_path / f'tnet_{index}.pth.tar', t.transforms[attr])}"]
    b = imported(tmp_path, *args)
    assert b.attributes == ("Smiling", "Eyeglasses")
    assert b.transformer_methods == {"Smiling": "linear", "Eyeglasses": "linear"}
    assert b.config.identity == TINY.identity
    w, x = torch.randn(3, 10, 64), images(3)
    alphas = torch.tensor([[1.0, 0.0], [0.0, -1.5], [0.7, 1.2]])
    with torch.no_grad():
        pairs = {"latent classifier": (b.classifier(w), source["classifier"](w)),
                 "latent transformer (2 attributes)": (b.transformer(w, alphas), t(w, alphas)),
                 "arcface": (b.identity(x), source["identity"](x))}
    for name, (ours, ref) in pairs.items():
        assert torch.equal(ours, ref), name
        record_diff(name, max_diff(ours, ref))


@pytest.mark.full
def test_full_size_files_import_with_the_released_edit_range(tmp_path):
    """config-f 1024 and an 18-layer tnet: sizes come from the weights, edits cover layers 0..10."""
    config = load_config("ffhq-1024")
    torch.manual_seed(0)
    g = models.build(config, "generator")
    tnet = models.LinearEdit(18, 512, (0, 18))
    b = imported(tmp_path, "--stylegan2", write_stylegan2(tmp_path / "sg2.pt", g),
                 "--transformer", f"Smiling={write_bare(tmp_path / 'tnet_31.pth.tar', tnet)}")
    assert b.config.generator == config.generator
    assert b.config.transformer.layers == (0, 11)
    assert torch.equal(b.generator.noises.noise_16, g.noises.noise_16)
    w = torch.randn(1, 18, 512)
    with torch.no_grad():
        edited = b.transformer(w, torch.ones(1, 1))
    assert torch.equal(edited[:, 11:], w[:, 11:]) and not torch.equal(edited[:, :11], w[:, :11])


@pytest.mark.full
def test_full_size_encoder_layout_is_inferred_from_the_weights():
    config = load_config("ffhq-1024")
    state = models.build(config, "encoder").encoder.state_dict()
    assert encoder_config(state, "e4e", "x") == config.encoder


# ---- refusals: one line, non-zero exit, nothing written ----------------------------------
def refused(tmp_path, *args, match):
    out = tmp_path / "out"
    result = run("import", *args, "--out", out)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], result.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    return lines[0]


@pytest.mark.parametrize("content", [b"", b"hello, not weights\n", os.urandom(4096)])
def test_a_file_that_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    line = refused(tmp_path, "--stylegan2", path, match="is not a PyTorch checkpoint")
    assert str(path) in line


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "payload": Payload(marker)}, path)
    line = refused(tmp_path, "--stylegan2", path, match="refused")
    assert "would run code" in line and "evil.pt" in line
    assert not marker.exists()


def test_a_missing_key_names_the_file_and_key(source, tmp_path):
    path = write_stylegan2(tmp_path / "sg2.pt", source["generator"])
    ckpt = torch.load(path, weights_only=True)
    del ckpt["g_ema"]["conv1.noise.weight"]
    torch.save(ckpt, path)
    refused(tmp_path, "--stylegan2", path, match="sg2.pt: missing key 'conv1.noise.weight'")


def test_an_unexpected_key_names_the_file_and_key(source, tmp_path):
    path = write_bare(tmp_path / "lc.pth", source["classifier"])
    state = torch.load(path, weights_only=True)
    state["fcs.9.scale"] = torch.ones(1)
    torch.save(state, path)
    refused(tmp_path, "--stylegan2", write_stylegan2(tmp_path / "g.pt", source["generator"]),
            "--classifier", path, match="lc.pth: unexpected key 'fcs.9.scale'")


def test_a_shape_difference_names_the_file_key_and_both_shapes(source, tmp_path):
    path = write_bare(tmp_path / "tnet_31.pth.tar", source["transformer"].transforms["Smiling"])
    state = torch.load(path, weights_only=True)
    state["dense.3.weight"] = torch.zeros(64, 32)
    torch.save(state, path)
    refused(tmp_path, "--stylegan2", write_stylegan2(tmp_path / "g.pt", source["generator"]),
            "--transformer", f"Smiling={path}",
            match="tnet_31.pth.tar: 'dense.3.weight' has shape [64, 32], vrfam-rt expects [64, 64]")


def test_a_transformer_for_another_generator_is_refused(source, tmp_path):
    path = write_bare(tmp_path / "tnet.pth", source["transformer"].transforms["Smiling"])
    state = torch.load(path, weights_only=True)
    del state["dense.9.weight"], state["dense.9.bias"]
    torch.save(state, path)
    refused(tmp_path, "--stylegan2", write_stylegan2(tmp_path / "g.pt", source["generator"]),
            "--transformer", f"Smiling={path}", match="tnet.pth: missing key 'dense.9.weight'")


def test_a_stylegan2_file_without_g_ema(tmp_path):
    path = tmp_path / "d.pt"
    torch.save({"d": {"x": torch.zeros(1)}}, path)
    refused(tmp_path, "--stylegan2", path, match="no 'g_ema' entry")


def test_an_encoder_file_of_another_layout_or_without_latent_avg(source, tmp_path):
    g = write_stylegan2(tmp_path / "g.pt", source["generator"])
    refused(tmp_path, "--e4e", g, match="g.pt: no 'state_dict' entry")
    path = write_e4e(tmp_path / "e4e.pt", source["encoder"], source["generator"])
    ckpt = torch.load(path, weights_only=True)
    del ckpt["latent_avg"]
    torch.save(ckpt, path)
    refused(tmp_path, "--e4e", path, match="e4e.pt: no 'latent_avg' entry")


def test_an_unknown_attribute_lists_the_valid_ones_and_the_closest(source, tmp_path):
    line = refused(tmp_path, "--stylegan2", write_stylegan2(tmp_path / "g.pt", source["generator"]),
                   "--transformer", "Smilling=t.pth", match="unknown attribute 'Smilling'")
    assert "did you mean Smiling?" in line and "Eyeglasses" in line


def test_argument_errors(source, tmp_path):
    g = write_stylegan2(tmp_path / "g.pt", source["generator"])
    refused(tmp_path, match="needs a generator")
    refused(tmp_path, "--e4e", g, "--psp", g, match="not both")
    refused(tmp_path, "--stylegan2", tmp_path / "nope.pt", match="nope.pt: no such file")
    result = run("import", "--stylegan2", g, "--transformer", "Smiling", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "ATTR=FILE" in result.stderr


def test_an_existing_output_is_kept_unless_forced(source, tmp_path):
    g = write_stylegan2(tmp_path / "g.pt", source["generator"])
    out = tmp_path / "bundle"
    assert run("import", "--stylegan2", g, "--out", out).exit_code == 0
    first = json.loads((out / "bundle.json").read_text())
    result = run("import", "--stylegan2", g, "--out", out)
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert json.loads((out / "bundle.json").read_text()) == first
    assert run("import", "--stylegan2", g, "--out", out, "--force").exit_code == 0


def test_info_runs_as_a_module_and_names_the_backends(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vrfam_rt", "info", "--json", tmp_path / "i.json"],
                            capture_output=True, text=True, check=True)
    assert "eager" in result.stdout and "trt" in result.stdout
    facts = json.loads((tmp_path / "i.json").read_text())
    assert facts["versions"]["torch"] == importlib.metadata.version("torch")
    assert facts["backends"]["eager"].startswith("cpu")
