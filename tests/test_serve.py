"""`vrfam-rt serve`: Triton with dynamic batching, every request answered on its own."""
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.client import HTTPException
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vrfam_rt.cli import main
from vrfam_rt.errors import VrfamError
from vrfam_rt.serving import pbtxt
from vrfam_rt.serving.edits import EditRequest, EditService
from vrfam_rt.serving.server import MODEL, edit_model_config
from vrfam_rt.serving.triton_model import ServeOptions
from vrfam_rt.suite import default_suite

pytest.importorskip("pytriton", reason="serving needs `pip install vrfam-rt[serve]`")
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")

FACE = default_suite() / "faces" / "example.png"
START_S = 300            # a cold start exports the default bundle's graphs first
MAX_BYTES = 200_000      # the module's server: --max-bytes (the example face has 12 kB)
STOP_S = 5               # SIGTERM to exit, idle or busy (a 30 s grace is Kubernetes')


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_serve(cache: Path, *args: str):
    """`vrfam-rt serve` on free loopback ports: (process, http url, grpc url, metrics url),
    once it says it is serving; the output is drained in a thread (kept in .said)."""
    http, grpc, metrics = free_ports(3)
    env = {**os.environ, "VRFAM_RT_CACHE": str(cache)}
    process = subprocess.Popen(
        [sys.executable, "-m", "vrfam_rt", "serve", "--http-port", str(http), "--grpc-port",
         str(grpc), "--metrics-port", str(metrics), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said, up = [], threading.Event()

    def drain():
        for line in process.stdout:
            said.append(line)
            if line.startswith("serving "):
                up.set()
        up.set()
    threading.Thread(target=drain, daemon=True).start()
    if not up.wait(START_S) or process.poll() is not None:
        process.kill()
        pytest.fail("serve did not start:\n" + "".join(said[-30:]))
    process.said = said
    return process, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", f"http://127.0.0.1:{metrics}/metrics"


def stop_serve(process) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(90)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.fixture(scope="module")
def server(shared_cache):
    process, http, grpc, metrics = start_serve(shared_cache, "--max-batch", "4",
                                               "--max-queue-delay-us", "200000",
                                               "--max-bytes", str(MAX_BYTES))
    yield http, grpc, metrics
    stop_serve(process)


def inputs(image: bytes, edits: str, align=None, module=httpclient):
    tensors = [module.InferInput("image", [1, 1], "BYTES"), module.InferInput("edits", [1, 1], "BYTES")]
    tensors[0].set_data_from_numpy(np.array([[image]], dtype=np.object_))
    tensors[1].set_data_from_numpy(np.array([[edits.encode()]], dtype=np.object_))
    if align is not None:
        tensors.append(module.InferInput("align", [1, 1], "BOOL"))
        tensors[-1].set_data_from_numpy(np.array([[align]]))
    return tensors


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)


@pytest.fixture(scope="module")
def cli_edit(tmp_path_factory):
    """What `vrfam-rt edit` writes for the example face, Smiling +1, no alignment."""
    out = tmp_path_factory.mktemp("cli")
    result = CliRunner().invoke(main, ["edit", str(FACE), "--attr", "Smiling", "--no-align",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    return decode((out / "example_Smiling+1.0.png").read_bytes())


def metric(url: str, name: str, at_least: float | None = None, wait_s: float = 10) -> float:
    """A counter of MODEL on Triton's metrics page. Triton records a request's statistics
    after its response has gone out, so a client can read them a moment early: with
    `at_least`, read again (for up to `wait_s`) until the counter gets there."""
    import urllib.request

    deadline = time.monotonic() + wait_s
    while True:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        value = sum(float(line.split()[-1]) for line in text.splitlines()
                    if line.startswith(name + "{") and f'model="{MODEL}"' in line)
        if at_least is None or value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_concurrent_requests_are_batched_and_equal_the_cli_edit(server, cli_edit):
    http, _, metrics = server
    client = httpclient.InferenceServerClient(http, concurrency=8)
    face = FACE.read_bytes()
    batches, requests = metric(metrics, "nv_inference_exec_count"), \
        metric(metrics, "nv_inference_request_success")
    pending = [client.async_infer(MODEL, inputs(face, "Smiling=1.0", align=False)) for _ in range(8)]
    pngs = [p.get_result().as_numpy("png") for p in pending]
    assert all(png.shape == (1, 1) for png in pngs)
    for png in pngs:                     # the same picture, to 8-bit rounding
        assert np.abs(decode(png[0, 0]) - cli_edit).max() <= 1
    done = metric(metrics, "nv_inference_request_success", at_least=requests + 8) - requests
    ran = metric(metrics, "nv_inference_exec_count") - batches
    assert done == 8 and ran < 8, (done, ran)        # dynamic batching: fewer batches


def test_grpc_answers_too_and_no_edit_is_the_reconstruction(server):
    _, grpc, _ = server
    client = grpcclient.InferenceServerClient(grpc)
    face = FACE.read_bytes()
    edited = client.infer(MODEL, inputs(face, "Smiling=1", align=False, module=grpcclient))
    same = client.infer(MODEL, inputs(face, "", align=False, module=grpcclient))
    a, b = decode(edited.as_numpy("png")[0, 0]), decode(same.as_numpy("png")[0, 0])
    assert a.shape == b.shape and np.abs(a - b).mean() > 1


def noise_png() -> bytes:
    image = Image.effect_noise((96, 96), 60).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


BAD = [
    (b"not an image", "Smiling=1", False, "image: not a readable image (not a format PIL knows)"),
    (b"", "Smiling=1", False, "image: empty; send an encoded photo"),
    (b"\xff" * (MAX_BYTES + 1), "Smiling=1", False,
     f"image: {MAX_BYTES + 1} bytes, over this server's limit of {MAX_BYTES}"),
    ("noise", "Smiling=1", True, "image: no face found; send a frontal photo, or align=false"),
    ("face", "Smiles=1", False, "`edits='Smiles=1'`: unknown attribute 'Smiles'"),
    ("face", "Smiling=2", False, "`edits='Smiling=2'`: alpha 2 for Smiling is outside [-1.5, 1.5]"),
    ("face", "Smiling=x", False, "`edits='Smiling=x'`: alpha 'x' is not a number"),
]


def test_each_bad_request_is_named_counted_as_failed_and_its_batch_mates_are_answered(server):
    """A bad request gets HTTP 400 and one line that names its input (no repr, no CLI
    flag), and counts in vrfam_edit_request_failure (Triton's Python backend counts it
    in nv_inference_request_success: see triton_model.py)."""
    http, _, metrics = server
    client = httpclient.InferenceServerClient(http, concurrency=8)
    images = {"face": FACE.read_bytes(), "noise": noise_png()}
    failed = metric(metrics, "vrfam_edit_request_failure")
    good = client.async_infer(MODEL, inputs(images["face"], "Smiling=0.5", align=False))
    bad = [client.async_infer(MODEL, inputs(images.get(i, i), e, a)) for i, e, a, _ in BAD]
    good2 = client.async_infer(MODEL, inputs(images["face"], "Eyeglasses=-1", align=False))
    for pending, (_, _, _, message) in zip(bad, BAD):
        with pytest.raises(httpclient.InferenceServerException) as caught:
            pending.get_result()
        said = caught.value.message()
        assert caught.value.status() == "400" and said.startswith(message), said
        assert "\n" not in said and not any(s in said for s in ("<", "0x", "--", "Traceback"))
    assert decode(good.get_result().as_numpy("png")[0, 0]).shape == (64, 64, 3)
    assert decode(good2.get_result().as_numpy("png")[0, 0]).shape == (64, 64, 3)
    assert metric(metrics, "vrfam_edit_request_failure", at_least=failed + len(BAD)) - failed \
        == len(BAD)


def test_wrong_shape_or_dtype_is_refused_and_the_server_stays_up(server):
    http, _, _ = server
    client = httpclient.InferenceServerClient(http)
    face = FACE.read_bytes()
    wide = inputs(face, "Smiling=1", align=False)
    wide[0] = httpclient.InferInput("image", [1, 2], "BYTES")
    wide[0].set_data_from_numpy(np.array([[face, face]], dtype=np.object_))
    floats = inputs(face, "Smiling=1", align=False)
    floats[0] = httpclient.InferInput("image", [1, 1], "FP32")
    floats[0].set_data_from_numpy(np.zeros((1, 1), np.float32))
    for bad, message in ((wide, "image"), (floats, "image")):
        with pytest.raises(Exception) as caught:
            client.infer(MODEL, bad)
        assert message in str(caught.value)
    assert client.is_server_live() and client.is_model_ready(MODEL)
    ok = client.infer(MODEL, inputs(face, "Smiling=1", align=False))
    assert decode(ok.as_numpy("png")[0, 0]).shape == (64, 64, 3)


def _session_members(sid: int) -> list[str]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:           # field 6 of stat: the session id
            found.append(stat.parent.name)
    return found


def _shared_memory(pid: int) -> list[Path]:
    """The Python backend's /dev/shm regions of the server `vrfam-rt serve` (pid) ran."""
    return list(Path("/dev/shm").glob(f"vrfam_serve_{pid}_*"))


@pytest.mark.parametrize("backend, busy", [(["--backend", "eager"], True),
                                           (["--backend", "openvino", "--precision", "int8"], False)])
def test_sigterm_stops_triton_and_its_stubs_within_5_s_with_a_client_connected(
        shared_cache, backend, busy):
    """A client holding an idle keep-alive connection (as tritonclient does), and for
    `busy` a request in flight, does not hold the stop up to Triton's 30 s default."""
    process, http, _, _ = start_serve(shared_cache, "--config", "tiny", *backend)
    children = [p.parent.name for p in Path("/proc").glob("[0-9]*/stat")
                if p.read_text().rsplit(")", 1)[1].split()[1] == str(process.pid)]
    (triton,) = children                    # tritonserver leads a session of its own
    assert len(_session_members(int(triton))) >= 2, "tritonserver and the model's stub"
    assert _shared_memory(process.pid)
    client = httpclient.InferenceServerClient(http)
    assert client.is_model_ready(MODEL)
    pending = client.async_infer(MODEL, inputs(FACE.read_bytes(), "Smiling=1", align=False)) \
        if busy else None
    start = time.monotonic()
    stop_serve(process)
    took = time.monotonic() - start
    assert took < STOP_S, f"stopped in {took:.1f} s"
    assert process.returncode == 0 and "stopped" in "".join(process.said)
    assert "Traceback" not in "".join(process.said)
    if pending:               # answered, or failed at once (an error, the connection closed)
        try:
            assert pending.get_result().as_numpy("png").shape == (1, 1)
        except (httpclient.InferenceServerException, ConnectionError, HTTPException):
            pass                # geventhttpclient's HTTPConnectionClosed is an HTTPException
    deadline = time.monotonic() + 10
    while _session_members(int(triton)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_members(int(triton)) == []
    assert _shared_memory(process.pid) == []


def test_a_failed_start_says_so_in_a_few_lines_keeps_its_log_and_leaves_no_shared_memory(
        shared_cache):
    http, grpc, metrics = free_ports(3)
    process = subprocess.Popen(
        [sys.executable, "-m", "vrfam_rt", "serve", "--config", "tiny", "--ready-timeout", "1",
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        env={**os.environ, "VRFAM_RT_CACHE": str(shared_cache)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    _, stderr = process.communicate(timeout=START_S)
    lines = stderr[stderr.index("error: "):].strip().splitlines()     # after the progress
    assert process.returncode == 1 and len(lines) <= 3 and "Traceback" not in stderr, lines
    assert "was not ready after 1 s (the ready timeout)" in lines[0]
    log = Path(lines[0].split("its log (")[1].split(")")[0])
    assert log.is_file()
    log.unlink()
    assert _shared_memory(process.pid) == []


def test_bad_option_values_are_usage_errors():
    for command in (["serve", "--max-bytes", "0"], ["loadtest", "--wait", "-1"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output


def test_the_model_configuration_parses_as_triton_reads_it():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    options = ServeOptions(bundle="/models/a b", config=None, seed=None, digest="0" * 64,
                           backend="openvino", precision="fp32", device="cpu", threads=None,
                           cache_root=None, max_batch=8, max_pixels=10**6, max_bytes=10**6,
                           label='a "quoted" name\\')
    text = pbtxt.dumps(edit_model_config(options, max_batch=8, queue_delay_us=5000))
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert config.name == MODEL and config.backend == "python" and config.max_batch_size == 8
    assert [(i.name, i.data_type, list(i.dims), i.optional) for i in config.input] == [
        ("image", model_config_pb2.TYPE_STRING, [1], False),
        ("edits", model_config_pb2.TYPE_STRING, [1], False),
        ("align", model_config_pb2.TYPE_BOOL, [1], True)]
    assert [(o.name, list(o.dims)) for o in config.output] == [("png", [1])]
    assert config.dynamic_batching.max_queue_delay_microseconds == 5000
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert ServeOptions.from_json(config.parameters["vrfam_rt"].string_value) == options


def test_the_service_answers_each_request_in_order(tiny):
    from vrfam_rt.pipeline import EditPipeline
    from vrfam_rt.on_demand import open_runtime

    pipe = EditPipeline(open_runtime(tiny, "eager"), tiny.config.encoder.input_size, align=False,
                        max_batch=2)
    face = FACE.read_bytes()
    answers = EditService(pipe)([EditRequest(face, "Smiling=1", False), EditRequest(b"x", ""),
                                 EditRequest(face, "Smiling=1,Male=-0.5", False),
                                 EditRequest(face, "", False)])
    assert [type(a) for a in answers] == [bytes, VrfamError, bytes, bytes]
    assert "image: not a readable image" in str(answers[1])
    [direct] = pipe(FACE, {"Smiling": 1.0}, align=False)
    assert np.abs(decode(answers[0]) - np.asarray(direct, dtype=int)).max() <= 1


def test_loadtest_reports_each_level_with_the_batches_the_server_ran(server, tmp_path):
    http, _, _ = server
    result = CliRunner().invoke(main, ["loadtest", "--url", http, "--concurrency", "1,4",
                                       "--requests", "12", "--wait", "30",
                                       "--json", str(tmp_path / "l.json")])
    assert result.exit_code == 0, result.output
    one, four = json.loads((tmp_path / "l.json").read_text())["levels"]
    assert (one["concurrency"], four["concurrency"]) == (1, 4)
    assert one["errors"] == four["errors"] == 0 and one["requests"] == four["requests"] == 12
    assert one["p50_ms"] <= one["p90_ms"] <= one["p99_ms"]
    assert one["mean_batch"] == 1.0 and one["batches"] == 12       # one in flight at a time
    assert four["mean_batch"] > 1.5                                  # batched dynamically
    assert "req/s" in result.stdout and "mean batch" in result.stdout


def test_loadtest_counts_every_error_under_one_message(server, tmp_path):
    http, _, _ = server
    result = CliRunner().invoke(main, ["loadtest", "--url", http, "--concurrency", "1,3",
                                       "--requests", "6", "--edits", "Smiles=1",
                                       "--json", str(tmp_path / "l.json")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    for row in json.loads((tmp_path / "l.json").read_text())["levels"]:
        [(message, count)] = row["error_messages"]         # one kind, all of them
        assert row["errors"] == count == 6, row
        assert message.startswith("[400] `edits='Smiles=1'`: unknown attribute 'Smiles'")
    assert "concurrency 3: 6 x [400] `edits='Smiles=1'`: unknown attribute" in result.stderr


def test_loadtest_without_a_server_says_so_in_one_line_after_waiting():
    (port,) = free_ports(1)
    result = CliRunner().invoke(main, ["loadtest", "--url", f"127.0.0.1:{port}", "--requests", "1"])
    assert result.exit_code == 1
    assert "no Triton server answers there" in result.stderr and len(result.stderr.splitlines()) == 1
    start = time.monotonic()
    result = CliRunner().invoke(main, ["loadtest", "--url", f"127.0.0.1:{port}", "--wait", "1"])
    assert result.exit_code == 1 and time.monotonic() - start >= 1
    assert "after 1 s (`--wait 1`)" in result.stderr and len(result.stderr.splitlines()) == 1


def parse_repo(root: Path) -> dict:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return {d.name: text_format.Parse((d / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
            for d in sorted(root.iterdir()) if (d / "config.pbtxt").is_file()}


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_triton_repo_from_onnx_parses_and_chains_the_stages(tiny_exports, tmp_path, runtime):
    from tritonclient.grpc import model_config_pb2

    out = tmp_path / "repo"
    result = CliRunner().invoke(main, ["triton-repo", "--onnx", str(tiny_exports[0] / "fp32"),
                                       "--out", str(out), "--runtime", runtime,
                                       "--max-batch", "4", "--instances", "2"])
    assert result.exit_code == 0, result.output
    assert "tritonserver --model-repository=/models" in result.stdout
    configs = parse_repo(out)
    assert set(configs) == {"vrfam_encoder", "vrfam_transformer", "vrfam_generator", "vrfam_pipeline"}
    manifest = json.loads((tiny_exports[0] / "fp32" / "manifest.json").read_text())["files"]
    for stage in ("encoder", "transformer", "generator"):
        config = configs[f"vrfam_{stage}"]
        if runtime == "onnxruntime":
            assert config.platform == "onnxruntime_onnx"
        else:
            assert config.backend == "openvino" and config.default_model_filename == "model.onnx"
        assert config.max_batch_size == 4 and config.instance_group[0].count == 2
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
        assert config.dynamic_batching.max_queue_delay_microseconds == 1000
        spec = manifest[stage]
        assert [(t.name, list(t.dims)) for t in config.input] == \
            [(s["name"], s["shape"][1:]) for s in spec["inputs"]]
        assert [(t.name, list(t.dims)) for t in config.output] == \
            [(s["name"], s["shape"][1:]) for s in spec["outputs"]]
        assert (out / f"vrfam_{stage}" / "1" / "model.onnx").stat().st_size == \
            (tiny_exports[0] / "fp32" / spec["file"]).stat().st_size
    ensemble = configs["vrfam_pipeline"]
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 4
    assert [(t.name, list(t.dims)) for t in ensemble.input] == [
        ("image", manifest["encoder"]["inputs"][0]["shape"][1:]),
        ("alphas", manifest["transformer"]["inputs"][1]["shape"][1:])]
    assert [(t.name, list(t.dims)) for t in ensemble.output] == [
        ("edited", manifest["generator"]["outputs"][0]["shape"][1:])]
    steps = [(s.model_name, dict(s.input_map), dict(s.output_map))
             for s in ensemble.ensemble_scheduling.step]
    assert steps == [
        ("vrfam_encoder", {"image": "image"}, {"wplus": "wplus"}),
        ("vrfam_transformer", {"wplus": "wplus", "alphas": "alphas"}, {"wplus_edited": "wplus_edited"}),
        ("vrfam_generator", {"wplus": "wplus_edited"}, {"image": "edited"})]
    again = CliRunner().invoke(main, ["triton-repo", "--onnx", str(tiny_exports[0] / "fp32"),
                                      "--out", str(out)])
    assert again.exit_code == 1 and "already exists" in again.stderr


def _engines_folder(folder: Path, flavour: str, manifest_files: dict) -> Path:
    """A plans folder as build-engines writes it (manifest and plan files); the plans'
    bytes are not TensorRT's (nothing here loads them)."""
    from vrfam_rt import manifests

    folder.mkdir()
    files = {}
    for stage, spec in manifest_files.items():
        (folder / f"{stage}.plan").write_bytes(b"plan of " + stage.encode())
        files[stage] = {"plan": f"{stage}.plan", "inputs": spec["inputs"], "outputs": spec["outputs"],
                        "profile": {i["name"]: {"min": [1], "opt": [8], "max": [8]}
                                    for i in spec["inputs"]}}
    manifests.write(folder, "engines", {"flavour": flavour, "precision": "fp16", "files": files})
    return folder


def test_triton_repo_from_tensorrt_plans_runs_them_on_gpus(tiny_exports, tmp_path):
    from tritonclient.grpc import model_config_pb2

    specs = json.loads((tiny_exports[0] / "fp32" / "manifest.json").read_text())["files"]
    plans = _engines_folder(tmp_path / "plans", "tensorrt", specs)
    result = CliRunner().invoke(main, ["triton-repo", "--engines", str(plans), "--out",
                                       str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    configs = parse_repo(tmp_path / "repo")
    for stage in ("encoder", "transformer", "generator"):
        config = configs[f"vrfam_{stage}"]
        assert config.platform == "tensorrt_plan" and config.max_batch_size == 8
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        assert (tmp_path / "repo" / f"vrfam_{stage}" / "1" / "model.plan").read_bytes() == \
            (plans / f"{stage}.plan").read_bytes()
    too_big = CliRunner().invoke(main, ["triton-repo", "--engines", str(plans), "--out",
                                        str(tmp_path / "r2"), "--max-batch", "16"])
    assert too_big.exit_code == 1 and "exceeds what the models take (8)" in too_big.stderr


def test_triton_repo_refuses_tensorrt_rtx_plans_and_missing_stages(tiny_exports, tmp_path):
    specs = json.loads((tiny_exports[0] / "fp32" / "manifest.json").read_text())["files"]
    rtx = _engines_folder(tmp_path / "rtx", "rtx", specs)
    result = CliRunner().invoke(main, ["triton-repo", "--engines", str(rtx), "--out", str(tmp_path / "a")])
    assert result.exit_code == 1 and "TensorRT-RTX plans" in result.stderr
    partial = _engines_folder(tmp_path / "two", "tensorrt",
                              {k: v for k, v in specs.items() if k != "transformer"})
    result = CliRunner().invoke(main, ["triton-repo", "--engines", str(partial), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and "holds no transformer model" in result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_batches_pad_to_a_few_sizes_for_backends_compiled_per_size():
    import torch

    from vrfam_rt.pipeline import bucket, pad_rows

    assert [bucket(n, 8) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    assert bucket(5, 6) == 6 and bucket(9, 8) == 9          # never below the batch
    faces = torch.arange(3 * 2).view(3, 2)
    padded = pad_rows(faces, bucket(3, 8))
    assert padded.shape == (4, 2) and torch.equal(padded[:3], faces)
    assert torch.equal(padded[3], faces[2])
