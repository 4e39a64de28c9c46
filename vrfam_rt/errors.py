"""The one exception type users see; the CLI turns it into one line and an exit code."""


class VrfamError(Exception):
    """A failure the user can act on. The message names the input and what to do."""

    exit_code = 1


class MissingDependency(VrfamError):
    """An optional package or device is not available here."""

    exit_code = 2


class ShapeError(VrfamError, ValueError):
    """A tensor handed to a network or stage that is not of the shape (or dtype) the ONNX
    contract gives it: the message names the stage, the input, both shapes."""

    exit_code = 2


class UsageError(VrfamError):
    """A command-line value that cannot be right (an unknown attribute, an alpha out of
    range, a malformed option): exit code 2, as click's own usage errors."""

    exit_code = 2
