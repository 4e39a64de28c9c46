"""`vrfam-rt serve`: the `vrfam_edit` model repository and the tritonserver that serves it.

Triton is PyTriton's bundled `tritonserver` (with its Python backend and the backend
stub built for this Python version). The server runs as a child process in a session
of its own, tied to ours (it is killed if we die) and stopped with its stubs on stop().
The Python backend's stub embeds libpython, so the interpreter's libdir leads
LD_LIBRARY_PATH (else it loads the system's libpython and fails), and this
interpreter's folder leads PATH (the stub takes its packages from the python3 found
there: this environment's).

Stopping: Triton waits for its HTTP connections to close, an idle keep-alive one too
(tritonclient keeps one), up to its exit timeout; EXIT_TIMEOUT_S keeps that short, so
SIGTERM or Ctrl-C stops a server within about STOP_S whether idle or busy (a request
still running after EXIT_TIMEOUT_S fails with its connection closed). The Python
backend's shared-memory regions carry a prefix of this process's own, so that what a
killed stub leaves in /dev/shm is removed after it.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vrfam_rt.errors import MissingDependency, VrfamError
from vrfam_rt.serving import pbtxt
from vrfam_rt.serving.triton_model import PARAMETER, ServeOptions

MODEL = "vrfam_edit"
SERVE_HINT = "pip install 'vrfam-rt[serve]'"
EXIT_TIMEOUT_S = 2          # tritonserver --exit-timeout-secs: in-flight requests' grace
STOP_S = 3.0                # from SIGTERM to SIGKILL of tritonserver and its stubs
SHM = Path("/dev/shm")


@dataclass(frozen=True)
class Ports:
    host: str = "127.0.0.1"
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    def describe(self) -> str:
        return (f"http://{self.host}:{self.http} (HTTP), {self.host}:{self.grpc} (gRPC), "
                f"http://{self.host}:{self.metrics}/metrics")


def check_ports(ports: Ports) -> None:
    """Refuse, before any model work, ports another program holds."""
    import socket

    for kind, port in (("HTTP", ports.http), ("gRPC", ports.grpc), ("metrics", ports.metrics)):
        with socket.socket(socket.AF_INET6 if ":" in ports.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((ports.host, port))
            except OSError as exc:
                raise VrfamError(f"{kind} port {port}: {ports.host}:{port} cannot be bound "
                                 f"({exc.strerror}); choose another port") from None
    if len({ports.http, ports.grpc, ports.metrics}) < 3:
        raise VrfamError(f"the HTTP, gRPC and metrics ports must differ (given {ports.http}, "
                         f"{ports.grpc}, {ports.metrics})")


def triton_home() -> Path:
    """PyTriton's tritonserver folder (bin/, backends/, python_backend_stubs/)."""
    try:
        import importlib.util
        spec = importlib.util.find_spec("pytriton")
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(f"vrfam-rt serve needs Triton from PyTriton: {SERVE_HINT}")
    home = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (home / "bin" / "tritonserver").is_file():
        raise MissingDependency(f"{home} holds no tritonserver; reinstall it: {SERVE_HINT}")
    return home


def backends_folder(home: Path, workspace: Path) -> Path:
    """`workspace/backends`: Triton's Python backend with the stub of this Python."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = home / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise MissingDependency(f"PyTriton has no Python backend for Python {version}; "
                                "serve from Python 3.8-3.13")
    python = workspace / "backends" / "python"
    python.mkdir(parents=True)
    for item in (home / "backends" / "python").iterdir():
        if item.is_file():
            (python / item.name).symlink_to(item)
    (python / stub.name).symlink_to(stub)
    return python.parent


def edit_model_config(options: ServeOptions, max_batch: int, queue_delay_us: int,
                      instances: int = 1) -> dict:
    """The `vrfam_edit` configuration: BYTES in, BYTES out, dynamic batching; the
    options ride in its PARAMETER as JSON."""
    one = [1]
    kind = pbtxt.Enum("KIND_GPU" if options.device != "cpu" else "KIND_CPU")
    return {
        "name": MODEL, "backend": "python", "max_batch_size": max_batch,
        "input": [{"name": "image", "data_type": pbtxt.Enum("TYPE_STRING"), "dims": one},
                  {"name": "edits", "data_type": pbtxt.Enum("TYPE_STRING"), "dims": one},
                  {"name": "align", "data_type": pbtxt.Enum("TYPE_BOOL"), "dims": one,
                   "optional": True}],
        "output": [{"name": "png", "data_type": pbtxt.Enum("TYPE_STRING"), "dims": one}],
        "dynamic_batching": {"max_queue_delay_microseconds": queue_delay_us},
        "instance_group": [{"count": instances, "kind": kind}],
        "parameters": pbtxt.parameters({PARAMETER: options.to_json()}),
    }


MODEL_PY = '''"""vrfam-rt's edit model for Triton's Python backend (written by `vrfam-rt serve`)."""
from vrfam_rt.serving.triton_model import TritonPythonModel  # noqa: F401
'''


def write_repository(repo: Path, config: dict) -> Path:
    """`repo/vrfam_edit/` with config.pbtxt and version 1's model.py."""
    folder = repo / MODEL
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(pbtxt.dumps(config) + "\n")
    (folder / "1" / "model.py").write_text(MODEL_PY)
    return folder


def server_environment(environment: dict[str, str]) -> dict[str, str]:
    """The environment tritonserver and its Python stubs need, from the caller's."""
    env = dict(environment)
    libdir = sysconfig.get_config_var("LIBDIR")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH")) if p)
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH"))
                                  if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def server_command(home: Path, backends: Path, repo: Path, ports: Ports,
                   shm_prefix: str) -> list[str]:
    return [str(home / "bin" / "tritonserver"), "--model-repository", str(repo),
            "--backend-directory", str(backends), "--model-control-mode", "none",
            "--exit-on-error", "true", "--strict-readiness", "true",
            "--http-address", ports.host, "--http-port", str(ports.http),
            "--grpc-address", ports.host, "--grpc-port", str(ports.grpc),
            "--metrics-address", ports.host, "--metrics-port", str(ports.metrics),
            "--allow-gpu-metrics", "false", "--exit-timeout-secs", str(EXIT_TIMEOUT_S),
            "--backend-config", f"python,shm-region-prefix-name={shm_prefix}"]


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the serving process dies (Linux)."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except OSError:
        pass


class TritonServer:
    """tritonserver serving a model repository, as a child process."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, ports: Ports,
                 shm_prefix: str):
        self.command, self.env, self.log_path, self.ports = command, env, log, ports
        self.shm_prefix = shm_prefix
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, preexec_fn=_die_with_parent)

    def last_line(self) -> str:
        """The log's last line: what Triton did last, its error when it failed."""
        try:
            lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines()
                     if line.strip()]
        except OSError:
            return "(no log)"
        return (lines or ["(empty)"])[-1][:500]

    def ready(self) -> bool:
        url = f"http://{self.ports.host}:{self.ports.http}/v2/models/{MODEL}/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float, stop) -> bool:
        """True once the model is ready; False when `stop()` turned true first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if stop():
                return False
            if self.process.poll() is not None:
                raise VrfamError(f"tritonserver stopped while starting (exit "
                                 f"{self.process.returncode}); {self.log_tail_says()}")
            if self.ready():
                return True
            time.sleep(0.25)
        raise VrfamError(f"{MODEL} was not ready after {timeout_s:.0f} s (the ready timeout); "
                         f"{self.log_tail_says()}")

    def log_tail_says(self) -> str:
        return f"its log ({shlex.quote(str(self.log_path))}) ends:\n{self.last_line()}"

    def stop(self) -> None:
        """SIGTERM (Triton lets in-flight requests finish for EXIT_TIMEOUT_S, unloads its
        model and stops its stubs), then SIGKILL to the whole session STOP_S after the
        SIGTERM, and the stubs' shared memory removed: nothing of it outlives this call."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_S)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)        # stubs left behind, if any
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
        self.process = None
        for region in SHM.glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)


def serve(options: ServeOptions, ports: Ports, max_batch: int, queue_delay_us: int,
          environment: dict[str, str], workspace: Path, say,
          ready_timeout_s: float = 600) -> None:
    """Serve `vrfam_edit` until SIGINT or SIGTERM, then stop the server. The workspace
    (repository, backends) is removed after; Triton's log, beside it, too unless the
    server failed (the error names it)."""
    home = triton_home()
    log = workspace.with_name(workspace.name + ".log")
    try:
        backends = backends_folder(home, workspace)
        repo = workspace / "models"
        write_repository(repo, edit_model_config(options, max_batch, queue_delay_us))
        shm_prefix = f"vrfam_serve_{os.getpid()}_"
        server = TritonServer(server_command(home, backends, repo, ports, shm_prefix),
                              server_environment(environment), log, ports, shm_prefix)
        stop = _stop_on_signals()
        server.start()
        try:
            if server.wait_ready(ready_timeout_s, stop):
                say(f"serving {MODEL} ({options.label}; max batch {max_batch}, queue delay "
                    f"{queue_delay_us} us) at {ports.describe()}")
            while not stop():
                if server.process.poll() is not None:
                    raise VrfamError(f"tritonserver stopped (exit {server.process.returncode}); "
                                     f"{server.log_tail_says()}")
                time.sleep(0.2)
        finally:
            server.stop()
        log.unlink(missing_ok=True)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _stop_on_signals():
    """A callable that turns true once SIGINT or SIGTERM has arrived."""
    arrived = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: arrived.append(signum))
    return lambda: bool(arrived)
