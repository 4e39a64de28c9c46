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
    ("notes.txt", FAILED, "is a file"),
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
                says="pass --force to replace it")
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


@pytest.mark.parametrize("out, says", [("mydir", "'photos'"), ("notes.txt", "is a file")])
def test_synth_render_and_triton_repo_force_keep_a_users_files(user, tiny_exports, out, says):
    run("synth", "render", "--n", 2, "--out", out, "--force", code=FAILED, says=says)
    run("triton-repo", "--onnx", tiny_exports[0] / "fp32", "--out", out, "--force",
        code=FAILED, says=says)
    assert user.intact()


def test_export_into_a_folder_of_the_users_keeps_their_files(user, tiny_exports):
    """export writes fp32/ beside what --out holds; --force replaces only its own fp32/."""
    (user.folder / "fp32").mkdir()
    (user.folder / "fp32" / "keep.txt").write_text("mine\n")
    user.before = user.snapshot()
    run("export", "--config", "tiny", "--precision", "fp32", "--out", user.folder, "--force",
        code=FAILED, says="'keep.txt', which is not an export made by vrfam-rt")
    run("export", "--config", "tiny", "--out", user.file, code=FAILED, says="is a file")
    assert user.intact()


def test_the_record_lists_what_the_command_wrote(tmp_path, tiny):
    tiny.save(tmp_path / "b", command="test")
    record = json.loads((tmp_path / "b" / ".vrfam-rt.json").read_text())
    assert record["kind"] == "bundle" and record["command"] == "test"
    assert set(record["entries"]) == {p.name for p in (tmp_path / "b").iterdir()} - {
        ".vrfam-rt.json"}
