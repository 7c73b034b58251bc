"""Fixtures for the adapter tests."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest
from moto.server import ThreadedMotoServer


@pytest.fixture
def loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- S3 vault: moto's S3 server behind the SigV4-checking gate (s3_check.py) ---------------

S3_ACCESS_KEY_ID = "AKIDBITLOOTTEST"
S3_SECRET_ACCESS_KEY = "bitloot-test-secret/access+key"


def _load_s3_check() -> ModuleType:
    name = "bitloot_tests_s3_check"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("s3_check.py"))
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def s3_credentials() -> tuple[str, str]:
    """(access key id, secret access key) that the gate accepts."""
    return S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY


@pytest.fixture(scope="session")
def s3_check() -> ModuleType:
    """The ``s3_check`` support module (the tests directory is not a package)."""
    return _load_s3_check()


@pytest.fixture(scope="module")
def moto_s3():
    """A real moto S3 server on loopback (port 0, read back): ``(host, port)``."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield server.get_host_and_port()
    finally:
        server.stop()
        # stop() shuts the loop down but leaves the listening socket open.
        server._server.server_close()


@pytest.fixture(scope="module")
def s3_gate_server(s3_check, moto_s3):
    """The gate, started once per module; tests use ``s3_gate``."""
    with s3_check.SigV4Gate(moto_s3, {S3_ACCESS_KEY_ID: S3_SECRET_ACCESS_KEY}) as gate:
        yield gate


@pytest.fixture
def s3_gate(s3_gate_server):
    """The SigV4-checking gate in front of ``moto_s3``, with a real clock and no rejections."""
    s3_gate_server.reset()
    return s3_gate_server
