"""The command line as a new user meets it: --help, option spellings, exit codes."""
import click
import pytest
from click.testing import CliRunner

from vrfam_rt.cli import main
from vrfam_rt.cli.common import many_option


def commands(group=main, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


COMMANDS = dict(commands())


def test_the_walk_sees_every_command():
    assert {"edit", "export", "bench", "calibrate", "train encoder", "synth render"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_and_every_command_an_example(name):
    command = COMMANDS[name]
    bare = [p.opts[0] for p in command.params if isinstance(p, click.Option) and not p.help]
    assert bare == []
    assert "Example" in (command.help or "") and "vrfam_rt" in command.help.replace("-", "_")
    result = CliRunner().invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0 and "Example" in result.stdout


# The options that may name files (import --transformer ATTR=FILE) stay repeat-only:
# a path may hold a comma.
REPEAT_ONLY = {("import", "--transformer")}


def test_every_list_valued_option_is_spelled_one_way():
    """A list is given the same way in every command: repeated or comma-separated
    (`--precision fp32,fp16` = `--precision fp32 --precision fp16`)."""
    odd = [(name, p.opts[0]) for name, c in COMMANDS.items() for p in c.params
           if isinstance(p, click.Option) and p.multiple
           and not getattr(p.callback, "many_option", False)]
    assert set(odd) == REPEAT_ONLY


def test_a_list_option_takes_repeats_and_commas_alike():
    @click.command()
    @many_option("--precision", "precisions", ("fp32", "fp16", "int8"), ("fp32",), "P.")
    @many_option("--batch", "batches", None, (1,), "B.", convert=int, low=1, high=8)
    def show(precisions, batches):
        click.echo(f"{precisions} {batches}")

    def run(*args):
        return CliRunner().invoke(show, list(args))
    assert run().stdout.strip() == "('fp32',) (1,)"
    assert run("--precision", "fp16,int8", "--batch", "2,4").stdout.strip() == \
        "('fp16', 'int8') (2, 4)"
    assert run("--precision", "fp16", "--precision", "int8,fp16").stdout.strip() == \
        "('fp16', 'int8') (1,)"
    for args, match in [(("--precision", "fp64"), "'fp64' is not one of fp32, fp16, int8"),
                        (("--batch", "9"), "9 is not in 1..8"),
                        (("--batch", "two"), "'two' is not a int"),
                        (("--precision", ","), "give at least one value")]:
        result = run(*args)
        assert result.exit_code == 2 and match in result.output, (args, result.output)


def test_info_shows_the_default_model():
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    section = result.stdout.split("default model:")[1]
    assert "64 px generator" in section and "Smiling" in section
    assert "vrfam (nonlinear latent transformer" in section
    assert "synthetic faces" in section and "Editing photos" in section


def test_help_stays_fast_the_cli_imports_no_torch():
    """Heavy libraries load inside the commands: `vrfam-rt --help` must not pay for torch."""
    import subprocess
    import sys

    code = "import sys, vrfam_rt.cli; print(sorted({'torch', 'onnx', 'onnxruntime'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
