"""HTTPS through Ray Serve's own TLS: a certificate made at run time (trustme), the
SDK verifying it against a CA bundle, HSTS on every response, TLS 1.3 negotiated and
TLS 1.2 refused."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import httpx
import pytest

import metosim as ms

from .conftest import free_port
from .test_lifecycle import metosim, start
from .test_service import tiny

import trustme  # noqa: E402


def test_the_service_over_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    data, port = tmp_path / "data", free_port()
    env = {**os.environ, "METOSIM_DATA_DIR": str(data), "METOSIM_PORT": str(port)}
    trust = ssl.create_default_context(cafile=str(ca_pem))
    process, state = start(env, data, "--tls-cert", str(cert_pem), "--tls-key", str(key_pem), verify=trust)
    try:
        assert state["url"] == f"https://127.0.0.1:{port}"
        # Verification is on: without the CA the handshake fails.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{state['url']}/v1/health")
        with socket.create_connection(("127.0.0.1", port)) as raw, trust.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.3"
        # TLS 1.2 is refused (the proxy's SSL context has a TLS 1.3 minimum), for a raw
        # handshake and for an HTTP client alike; a TLS 1.3 client gets HSTS.
        old = ssl.create_default_context(cafile=str(ca_pem))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        # (the server ends the handshake: an alert or, through asyncio, a bare EOF)
        with socket.create_connection(("127.0.0.1", port)) as raw, pytest.raises(ssl.SSLError):
            old.wrap_socket(raw, server_hostname="127.0.0.1")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{state['url']}/v1/health", verify=old)
        health = httpx.get(f"{state['url']}/v1/health", verify=trust)
        assert health.status_code == 200 and health.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        # The SDK end to end: submit, follow, download the result over a signed HTTPS link.
        monkeypatch.setenv("METOSIM_CA_BUNDLE", str(ca_pem))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        key = metosim(env, "keys", "create", "--name", "tls").stdout.strip()
        client = ms.Client(url=state["url"], api_key=key)
        headers: list[str | None] = []
        client.http.event_hooks["response"].append(lambda r: headers.append(r.headers.get("strict-transport-security")))
        data_ = client.run(tiny(), progress=False)
        assert abs(float(data_["T"].values[0]) - 1.0) < 1e-3
        assert headers and all(h == "max-age=31536000; includeSubDomains" for h in headers)
        assert client.jobs(limit=1)[0]["result"]["url"].startswith(f"https://127.0.0.1:{port}/v1/files/")
    finally:
        metosim(env, "stop")
        process.wait(timeout=15)
