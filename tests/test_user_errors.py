"""What a user types wrong: one clean line, the policy's exit code (2 usage, 1 failed
input), no traceback, and every file that was there before left as it was."""
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from layouts import write_stylegan2
from vrfam_rt.cli import main

USAGE, FAILED = 2, 1


class Planted:
    """A user's files under `root` (a folder with a text file and a subfolder, a regular
    file), and the check that none of them was lost or changed."""

    def __init__(self, root: Path):
        self.root = root
        self.folder = root / "mydir"
        (self.folder / "photos").mkdir(parents=True)
        (self.folder / "thesis.txt").write_text("four years of work\n")
        (self.folder / "photos" / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        self.file = root / "notes.txt"
        self.file.write_text("a regular file\n")
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, str]:
        return {str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.root.rglob("*")) if p.is_file()}

    def intact(self) -> bool:
        now = self.snapshot()
        return all(now.get(name) == digest for name, digest in self.before.items())


def run(*args, code: int, says: str):
    """Run the CLI in-process; check the exit code, that the error is one clean line (at
    most 3) with `says` in it, and that no exception escaped."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(errors) <= 3, result.stderr
    assert says in result.stderr, result.stderr
    return result


@pytest.fixture
def user(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return Planted(tmp_path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from vrfam_rt import Bundle

    return write_stylegan2(tmp_path_factory.mktemp("ckpt") / "g.pt",
                           Bundle.random("tiny", seed=0).generator)


# ---- --force replaces only what the same command made ----------------------------------------
@pytest.mark.parametrize("out, code, says", [
    ("mydir", FAILED, "'photos', which is not a bundle made by vrfam-rt"),
    ("notes.txt", USAGE, "is a file"),
    (".", USAGE, "is the working folder"),
    ("..", USAGE, "a folder above the working folder"),
])
def test_import_force_never_replaces_a_users_folder_or_file(user, checkpoint, out, code, says):
    run("import", "--stylegan2", checkpoint, "--out", out, "--force", code=code, says=says)
    assert user.intact()


def test_import_force_replaces_its_own_bundle_but_not_one_a_user_added_to(user, checkpoint):
    out = user.root / "bundle"
    assert CliRunner().invoke(main, ["import", "--stylegan2", str(checkpoint), "--out",
                                     str(out)]).exit_code == 0
    again = run("import", "--stylegan2", checkpoint, "--out", out, code=FAILED,
                says="pass `--force` to replace it")
    assert "vrfam-rt import" in again.stderr
    assert CliRunner().invoke(main, ["import", "--stylegan2", str(checkpoint), "--out", str(out),
                                     "--force"]).exit_code == 0
    (out / "my-notes.txt").write_text("mine\n")
    run("import", "--stylegan2", checkpoint, "--out", out, "--force", code=FAILED,
        says="'my-notes.txt', which vrfam-rt did not write there")
    assert (out / "my-notes.txt").read_text() == "mine\n" and (out / "bundle.json").is_file()
    assert user.intact()


def test_force_is_refused_for_another_commands_output(user, checkpoint):
    out = user.root / "bundle"
    assert CliRunner().invoke(main, ["import", "--stylegan2", str(checkpoint), "--out",
                                     str(out)]).exit_code == 0
    run("synth", "render", "--n", 2, "--out", out, "--force", code=FAILED,
        says="not a render folder made by vrfam-rt")
    assert (out / "bundle.json").is_file()


@pytest.mark.parametrize("out, code, says", [("mydir", FAILED, "'photos'"),
                                             ("notes.txt", USAGE, "is a file")])
def test_synth_render_and_triton_repo_force_keep_a_users_files(user, tiny_exports, out, code,
                                                               says):
    run("synth", "render", "--n", 2, "--out", out, "--force", code=code, says=says)
    run("triton-repo", "--onnx", tiny_exports[0] / "fp32", "--out", out, "--force",
        code=code, says=says)
    assert user.intact()


def test_export_into_a_folder_of_the_users_keeps_their_files(user, tiny_exports):
    """export writes fp32/ beside what --out holds; --force replaces only its own fp32/."""
    (user.folder / "fp32").mkdir()
    (user.folder / "fp32" / "keep.txt").write_text("mine\n")
    user.before = user.snapshot()
    run("export", "--config", "tiny", "--precision", "fp32", "--out", user.folder, "--force",
        code=FAILED, says="'keep.txt', which is not an export made by vrfam-rt")
    run("export", "--config", "tiny", "--out", user.file, code=USAGE, says="is a file")
    assert user.intact()


def test_the_record_lists_what_the_command_wrote(tmp_path, tiny):
    tiny.save(tmp_path / "b", command="test")
    record = json.loads((tmp_path / "b" / ".vrfam-rt.json").read_text())
    assert record["kind"] == "bundle" and record["command"] == "test"
    assert set(record["entries"]) == {p.name for p in (tmp_path / "b").iterdir()} - {
        ".vrfam-rt.json"}


# ---- output paths and option values are checked before any work -----------------------------
@pytest.mark.parametrize("args, says", [
    (["info", "--json", "notes.txt/x.json"], "notes.txt is a file"),
    (["info", "--json", "mydir"], "is a folder; name a file"),
    (["info", "--json", "/proc/vrfam/x.json"], "cannot write into"),
    (["export", "--config", "tiny", "--out", "notes.txt"], "is a file; name a folder"),
    (["export", "--config", "tiny", "--out", "x", "--json", "mydir"], "is a folder"),
    (["calibrate", "--config", "tiny", "--samples", "2", "--out", "notes.txt"], "is a file"),
    (["build-engines", "--onnx", "mydir", "--out", "notes.txt"], "is a file"),
    (["train", "classifier", "--out", "notes.txt", "--config", "tiny", "--data", "x"],
     "is a file"),
    (["gpu-check", "--out", "notes.txt"], "is a file"),
    (["bench", "--config", "tiny", "--plot", "notes.txt/p.png"], "notes.txt is a file"),
    (["eval", "--config", "tiny", "--json", "/proc/vrfam/x.json"], "cannot write into"),
    (["edit", "x.png", "--attr", "Smiling", "--device", "tpu"], "choose cpu, cuda or cuda:N"),
    (["bench", "--config", "tiny", "--device", "gpu"], "choose cpu, cuda or cuda:N"),
    (["train", "classifier", "--device", "tpu", "--config", "tiny", "--data", "x", "--out",
      "r"], "(or auto)"),
    (["eval", "--config", "tiny", "--alpha", "nan"], "not a finite number"),
    (["eval", "--config", "tiny", "--alpha", "5"], "not in -1.5..1.5"),
    (["eval", "--config", "tiny", "--attr", "Beard"], "unknown attribute 'Beard'"),
    (["edit", "x.png", "--attr", "Beard"], "unknown attribute 'Beard'"),
])
def test_bad_paths_and_values_are_usage_errors_before_any_work(user, args, says):
    run(*args, code=USAGE, says=says)
    assert user.intact()


def test_every_command_offers_the_same_configs():
    from vrfam_rt.config import config_names

    for args in (["export"], ["edit"], ["eval"], ["bench"], ["calibrate"], ["gpu-check"],
                 ["train", "classifier"]):
        result = CliRunner().invoke(main, [*args, "--help"])
        assert "[" + "|".join(sorted(config_names())) + "]" in result.output, args


# ---- edit never overwrites silently, and says how each image was made -------------------------
EXAMPLE = Path(__file__).resolve().parent.parent / "vrfam_rt/assets/default/faces/example.png"


def test_a_second_edit_into_the_same_folder_needs_overwrite(user):
    args = ["edit", str(EXAMPLE), "--attr", "Smiling", "--no-align", "--backend", "eager",
            "--config", "tiny", "--out", "out"]
    assert CliRunner().invoke(main, args).exit_code == 0
    written = user.root / "out" / "example_Smiling+1.0.png"
    first = written.read_bytes()
    run(*args, code=FAILED, says="pass --overwrite to replace it")
    assert written.read_bytes() == first
    assert CliRunner().invoke(main, args + ["--overwrite"]).exit_code == 0
    (user.root / "out" / "example_grid.png").write_text("a file of the user's\n")
    run(*args, "--grid", "--overwrite", code=FAILED, says="which vrfam-rt did not write")
    assert (user.root / "out" / "example_grid.png").read_text() == "a file of the user's\n"
    assert user.intact()


def test_each_edited_image_records_how_it_was_made_and_info_reads_it(user):
    from vrfam_rt import Bundle
    from vrfam_rt.images import read_provenance

    result = CliRunner().invoke(main, ["edit", str(EXAMPLE), "--attr", "Smiling=0.5",
                                       "--no-align", "--backend", "eager", "--config", "tiny",
                                       "--grid", "--out", "out"])
    assert result.exit_code == 0, result.output
    record = read_provenance(user.root / "out" / "example_Smiling+0.5.png")
    assert record["edit"] == {"Smiling": 0.5} and record["backend"] == "eager"
    assert record["precision"] == "fp32" and record["input"] == str(EXAMPLE)
    assert record["bundle_digest"] == Bundle.random("tiny", seed=0).digest
    assert read_provenance(user.root / "out" / "example_grid.png")["edits"] == [{"Smiling": 0.5}]
    shown = CliRunner().invoke(main, ["info", str(user.root / "out" / "example_Smiling+0.5.png")])
    assert shown.exit_code == 0 and "bundle_digest" in shown.output
    run("info", EXAMPLE, code=FAILED, says="holds no vrfam-rt record")


# ---- import and info: what a bundle can do --------------------------------------------------
def test_a_bundle_that_cannot_edit_is_written_with_a_warning_naming_the_files(user, checkpoint):
    result = CliRunner().invoke(main, ["import", "--stylegan2", str(checkpoint), "--out", "b"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "--transformer ATTR=" in warning[0] and "--e4e" in warning[0]
    shown = CliRunner().invoke(main, ["info", "--bundle", "b"])
    assert shown.exit_code == 0 and "can         render W+ codes" in shown.output
    assert "add" in shown.output and "imported from g.pt" in shown.output
    run("edit", EXAMPLE, "--bundle", "b", "--attr", "Smiling", "--no-align", code=USAGE,
        says="this bundle edits nothing")


def test_info_describes_a_suite_member():
    result = CliRunner().invoke(main, ["info", "--bundle", str(EXAMPLE.parent.parent),
                                       "--method", "InterFaceGAN"])
    assert result.exit_code == 0, result.output
    assert "interfacegan" in result.output and "edit Smiling" in result.output


# ---- the Python API: numpy and PIL in, and errors that say what to pass --------------------
@pytest.fixture(scope="module")
def pipe():
    from vrfam_rt import EditPipeline

    return EditPipeline.from_bundle(None, backend="eager", align=False)


def test_the_api_takes_numpy_arrays_and_pil_images_alike(pipe):
    import numpy as np
    from PIL import Image

    photo = Image.open(EXAMPLE).convert("RGB")
    from_pil = np.asarray(pipe(photo, {"Smiling": 1.0})[0], dtype=float)
    from_numpy = np.asarray(pipe(np.asarray(photo), {"Smiling": 1.0})[0], dtype=float)
    assert from_pil.shape == (64, 64, 3)
    assert np.abs(from_pil - from_numpy).max() <= 1      # same input: one rounding step


@pytest.mark.parametrize("images, edits, error, says", [
    (EXAMPLE, [("Smiling", 1.0)], TypeError, "edits must be a mapping"),
    (EXAMPLE, {"Smiling": "much"}, TypeError, "maps attribute names to numbers"),
    (3, None, TypeError, "pass a path, a PIL image, a numpy uint8"),
    ("float-array", None, TypeError, "must be uint8 HxWx3"),
    (EXAMPLE, {"Smiling": 2.0}, "UsageError", "pass `force=True`"),
])
def test_the_api_says_what_to_pass(pipe, images, edits, error, says):
    import numpy as np

    from vrfam_rt.errors import UsageError

    error = UsageError if error == "UsageError" else error
    images = np.zeros((8, 8, 3)) if images == "float-array" else images
    with pytest.raises(error, match=says):
        pipe(images, edits)


def test_the_api_checks_device_and_cache_before_any_work():
    from vrfam_rt import EditPipeline
    from vrfam_rt.errors import UsageError, VrfamError

    with pytest.raises(UsageError, match="choose cpu, cuda or cuda:N"):
        EditPipeline.from_bundle(None, backend="eager", device="tpu", align=False)
    with pytest.raises(VrfamError, match="`cache_root='/proc/vrfam'`: cannot write"):
        EditPipeline.from_bundle(None, backend="ort", cache_root="/proc/vrfam", align=False)


def test_a_network_called_with_the_wrong_shape_names_the_stage_and_both_shapes(tiny):
    import torch

    from vrfam_rt.errors import ShapeError

    with pytest.raises(ShapeError, match=r"encoder: image must be \[B,3,64,64\], got \[1, 3, "
                                         r"256, 256\]"):
        tiny.encoder(torch.zeros(1, 3, 256, 256))
    with pytest.raises(ShapeError, match="transformer: alphas must be"):
        tiny.transformer(torch.zeros(2, 10, 64), torch.zeros(2))


@pytest.mark.parametrize("backend", ["eager", "ort", "openvino"])
def test_every_backend_checks_what_a_stage_is_given_and_names_the_stage(tiny, tiny_exports,
                                                                         backend):
    """Stages meet through the ONNX contract: a backend refuses an input of another shape
    or dtype before it runs, in one ShapeError naming the stage, the input, both shapes."""
    import torch

    from vrfam_rt.backends.eager import EagerBackend
    from vrfam_rt.backends.openvino import OpenVinoBackend
    from vrfam_rt.backends.ort import OrtBackend
    from vrfam_rt.errors import ShapeError

    fp32 = tiny_exports[0] / "fp32"
    runner = {"eager": lambda: EagerBackend(tiny), "ort": lambda: OrtBackend(fp32),
              "openvino": lambda: OpenVinoBackend(fp32)}[backend]()
    g, K = tiny.config.generator, len(tiny.attributes)
    L, D = g.n_latent, g.style_dim
    with pytest.raises(ShapeError, match=r"^encoder: image must be \[B,3,64,64\], got "
                                         r"\[1, 3, 32, 32\]"):
        runner.encoder(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ShapeError, match=rf"^transformer: alphas must be \[2,{K}\], "
                                         rf"got \[1, {K}\]"):
        runner.transformer(torch.zeros(2, L, D), torch.zeros(1, K))
    with pytest.raises(ShapeError, match=r"^generator: wplus must be a floating tensor"):
        runner.generator(torch.zeros(1, L, D, dtype=torch.uint8))
    assert runner.generator(torch.zeros(1, L, D)).shape == (1, 3, 64, 64)


# ---- nothing writes into the installed package unless told to ----------------------------------
def test_synth_demo_face_needs_a_target():
    result = CliRunner().invoke(main, ["synth", "demo-face"])
    assert result.exit_code == USAGE and "--suite" in result.output


def test_help_offers_only_values_the_command_takes():
    classifier = CliRunner().invoke(main, ["train", "classifier", "--help"]).output
    transformer = CliRunner().invoke(main, ["train", "transformer", "--help"]).output
    assert "--data DIR|FILE " in classifier and "--data DIR|FILE|generator" in transformer
    run("train", "classifier", "--config", "tiny", "--data", "generator", "--out", "r",
        code=FAILED, says="--data generator has no attribute labels")


# ---- long work: a bar on a terminal, quiet when piped, and Ctrl-C says what was written -------
def test_ctrl_c_during_edit_says_what_was_written_and_exits_130(user, monkeypatch):
    from vrfam_rt.pipeline import EditPipeline

    edit_batch, calls = EditPipeline.edit, []

    def interrupted_on_the_second_batch(self, inversion, edits, **options):
        calls.append(len(inversion))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return edit_batch(self, inversion, edits, **options)

    monkeypatch.setattr(EditPipeline, "edit", interrupted_on_the_second_batch)
    result = CliRunner().invoke(main, ["edit", str(EXAMPLE), str(EXAMPLE), str(EXAMPLE),
                                       "--batch", "1", "--attr", "Smiling", "--no-align",
                                       "--backend", "eager", "--config", "tiny", "--out", "out"])
    assert result.exit_code == 130 and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("interrupted: wrote 1 images") and "1 of 3 photos done" in line
    assert sorted(p.name for p in (user.root / "out").iterdir()) == ["example_Smiling+1.0.png"]


def test_the_progress_bar_shows_on_a_terminal_and_not_in_a_pipe(tmp_path):
    import os
    import pty
    import subprocess
    import sys

    args = [sys.executable, "-m", "vrfam_rt", "edit", str(EXAMPLE), str(EXAMPLE), "--batch", "1",
            "--attr", "Smiling", "--no-align", "--backend", "eager", "--config", "tiny"]
    piped = subprocess.run(args + ["--out", str(tmp_path / "a")], capture_output=True,
                           text=True, timeout=120)
    assert piped.returncode == 0 and "photos" not in piped.stderr and "ETA" not in piped.stderr
    leader, follower = pty.openpty()
    process = subprocess.Popen(args + ["--out", str(tmp_path / "b")], stdin=follower,
                               stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:                  # the terminal closes when the command exits
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=120) == 0
    text = shown.decode(errors="replace")
    assert "editing 2/2 photos" in text and "/s, ETA" in text


# ---- one exit-code policy: unsupported backend/precision pairs are usage errors ------------------
@pytest.mark.parametrize("args, says", [
    (["--backend", "ort", "--precision", "bf16"],
     "`--backend ort` runs fp32, fp16, int8, not `--precision bf16`"),
    (["--backend", "openvino", "--precision", "fp16"], "not `--precision fp16`"),
    (["--backend", "trt", "--precision", "bf16"], "not `--precision bf16`"),
    (["--backend", "eager", "--precision", "int8"], "not `--precision int8`"),
    (["--backend", "eager", "--precision", "fp16"],
     "`--backend eager` runs `--precision fp16` on cuda, not `--device cpu`"),
    (["--backend", "openvino", "--device", "cuda"],
     "`--backend openvino` runs on cpu, not `--device cuda`"),
])
def test_unsupported_backend_precision_pairs_are_usage_errors(user, args, says):
    run("edit", EXAMPLE, "--attr", "Smiling", "--no-align", "--config", "tiny", "--out", "o",
        *args, code=USAGE, says=says)
    assert not (user.root / "o").exists() or not any((user.root / "o").iterdir())


def test_synth_sheet_never_writes_over_a_users_file(user):
    run("synth", "sheet", "--out", user.file, code=FAILED, says="which vrfam-rt did not write")
    run("synth", "sheet", "--out", user.file, "--overwrite", code=FAILED,
        says="which vrfam-rt did not write")
    assert CliRunner().invoke(main, ["synth", "sheet", "--out", "s.png"]).exit_code == 0
    run("synth", "sheet", "--out", "s.png", code=FAILED, says="pass --overwrite")
    assert CliRunner().invoke(main, ["synth", "sheet", "--out", "s.png",
                                     "--overwrite"]).exit_code == 0
    assert user.intact()
