"""Real services for tests, all on 127.0.0.1: an S3 server (moto) and Ray nodes (`ray start`).

Each service runs in its own process group and temporary folder and is killed with its whole
group when the test is done; Ray workers, which start sessions of their own, are found by a
marker in their environment, so nothing outlives a test.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

START_TIMEOUT = 120
MARKER = "REFINERY_TEST_SERVICE"
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Checksums only where an operation requires them: by default the AWS SDK sends
    # uploads aws-chunked with a CRC64NVME trailer, whose framing moto has been seen
    # to store as object data when the machine is loaded.
    "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED",
}


def free_ports(n: int) -> list[int]:
    """Distinct free loopback ports (held open together so they differ)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _marked(marker: str) -> list[int]:
    """Processes whose environment carries this marker."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return [p for p in pids if p != os.getpid()]


class Service:
    """A command started in its own session with a marker in its environment."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path):
        self.marker = uuid.uuid4().hex
        self.log_path = log
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            cmd, env={**env, MARKER: self.marker}, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for pid in _marked(f"{MARKER}={self.marker}"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


class S3Server(Service):
    """moto's S3 server; `env` holds what a client needs (endpoint and test credentials)."""

    def __init__(self, root: Path):
        port = free_ports(1)[0]
        self.endpoint = f"http://127.0.0.1:{port}"
        self.env = {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}
        super().__init__(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            {**os.environ, **self.env},
            root / "moto.log",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.alive():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not start:\n{self.tail()}")

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


def _answers(url: str, token: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def ray_env(token_file: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a Ray node: token auth on, this interpreter's tools on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env.update(
        {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_file),
            "RAY_DISABLE_USAGE_STATS": "1",
            # job drivers run `refinery` from this interpreter's environment
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **(extra or {}),
        }
    )
    return env


class RayHead(Service):
    """`ray start --head` with token authentication and its dashboard (Jobs API) on 127.0.0.1."""

    def __init__(self, root: Path, *, cpus: int = 2, env: dict[str, str] | None = None):
        self.root = root
        self.token = secrets.token_hex(32)
        self.token_file = root / "token"
        self.token_file.write_text(self.token)
        self.env = ray_env(self.token_file, env)
        gcs, dash, client, nm, om, agent, agent_grpc, renv, metrics = free_ports(9)
        self.gcs = f"127.0.0.1:{gcs}"
        self.address = f"http://127.0.0.1:{dash}"
        super().__init__(
            [
                sys.executable,
                "-m",
                "ray.scripts.scripts",
                "start",
                "--head",
                "--block",
                "--num-cpus",
                str(cpus),
                "--node-ip-address",
                "127.0.0.1",
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(dash),
                "--port",
                str(gcs),
                "--ray-client-server-port",
                str(client),
                "--node-manager-port",
                str(nm),
                "--object-manager-port",
                str(om),
                "--dashboard-agent-listen-port",
                str(agent),
                "--dashboard-agent-grpc-port",
                str(agent_grpc),
                "--runtime-env-agent-port",
                str(renv),
                "--metrics-export-port",
                str(metrics),
                "--object-store-memory",
                str(300 << 20),
                "--temp-dir",
                str(root / "ray"),
                "--disable-usage-stats",
            ],
            self.env,
            root / "head.log",
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.alive():
            if _answers(f"{self.address}/api/jobs/", self.token):
                return
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"Ray head did not answer within {START_TIMEOUT}s:\n{self.tail()}")

    def alive_nodes(self) -> int:
        """Nodes the cluster's control store counts as alive (asked from a separate driver)."""
        probe = (
            "import ray; ray.init(address=%r, log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
            % self.gcs
        )
        out = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True, text=True, timeout=120)
        return int(out.stdout.strip().splitlines()[-1])


class RayNode(Service):
    """A second node joining a head (`ray start --address`), with its own ports."""

    def __init__(self, head: RayHead, root: Path, *, cpus: int = 1):
        nm, om, agent, agent_grpc, renv, metrics = free_ports(6)
        super().__init__(
            [
                sys.executable,
                "-m",
                "ray.scripts.scripts",
                "start",
                "--address",
                head.gcs,
                "--block",
                "--num-cpus",
                str(cpus),
                "--node-ip-address",
                "127.0.0.1",
                "--node-manager-port",
                str(nm),
                "--object-manager-port",
                str(om),
                "--dashboard-agent-listen-port",
                str(agent),
                "--dashboard-agent-grpc-port",
                str(agent_grpc),
                "--runtime-env-agent-port",
                str(renv),
                "--metrics-export-port",
                str(metrics),
                "--object-store-memory",
                str(200 << 20),
                "--disable-usage-stats",
            ],
            head.env,
            root / "node.log",
        )

    def wait_joined(self, head: RayHead, nodes: int = 2) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.alive():
            if head.alive_nodes() >= nodes:
                return
            time.sleep(2)
        raise RuntimeError(f"the second Ray node did not join within {START_TIMEOUT}s:\n{self.tail()}")
