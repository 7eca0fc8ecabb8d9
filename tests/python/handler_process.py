"""Starts the real handler binary (in memory, standalone) on a free loopback port for the
Python suites. HANDLER_BIN names the binary (scripts/test.sh sets it)."""
import os
import socket
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_handler(**settings: str):
    binary = os.environ.get("HANDLER_BIN", str(ROOT / "target" / "debug" / "handler"))
    assert Path(binary).exists(), f"no handler binary at {binary}: run `cargo build` first"
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "PORT": str(port), "RUST_LOG": "warn", **settings}
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # bounded poll of the readiness probe, as the Functions host does
        try:
            if requests.get(f"{base}/", timeout=1).status_code == 200:
                return process, base
        except requests.ConnectionError:
            pass
        assert process.poll() is None, f"the handler exited with {process.returncode}"
        assert time.monotonic() < deadline, "the handler did not answer GET / within 30 s"
        time.sleep(0.02)
