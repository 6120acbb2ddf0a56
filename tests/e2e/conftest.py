"""End-to-end fixtures: the real `weir` binary, scripted upstreams on loopback, the SDKs.

The binary comes from $WEIR_BIN (`.ci/run` builds it); recorded fixtures from the
repository's fixtures/ directory.
"""
import http.server
import json
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
CLIENT_KEY = "sk-e2e-client-key"
UPSTREAM_KEY = "sk-e2e-upstream-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    """A scripted upstream: `routes[path] = (status, content_type, body)`; records requests."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                upstream.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(body or b"{}")))
                status, ctype, payload = upstream.routes.get(
                    self.path.split("?")[0], (404, "application/json", b'{"error":{"message":"no route"}}')
                )
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.close()


class Weir:
    def __init__(self, config_text, tmp_path, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        admin_port = free_port()
        self.admin_url = f"http://127.0.0.1:{admin_port}"
        cfg = tmp_path / f"weir-{self.port}.toml"
        self.config_path = cfg
        self.prefix = (
            f'[server]\nlisten = "127.0.0.1:{self.port}"\nadmin_listen = "127.0.0.1:{admin_port}"\nshutdown_grace = "5s"\n'
            '[auth]\nadmin_key = "sk-e2e-admin"\n'
            f'[[auth.keys]]\nname = "e2e"\nkey = "{CLIENT_KEY}"\n'
            '[providers.mock]\nkind = "mock"\nstream_delay = "0ms"\n'
        )
        cfg.write_text(self.prefix + config_text)
        binary = os.environ.get("WEIR_BIN", str(ROOT / "target" / "debug" / "weir"))
        self.log = open(tmp_path / f"weir-{self.port}.log", "w+")
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", str(cfg)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "WEIR_LOG_FORMAT": "json", **(env or {})},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError("weir did not start: " + self.logs())

    def rewrite(self, config_text):
        """Replaces the config file (the same server and auth sections)."""
        self.config_path.write_text(self.prefix + config_text)

    def status(self):
        """GET /status on the admin port."""
        import urllib.request

        req = urllib.request.Request(self.admin_url + "/status", headers={"authorization": "Bearer sk-e2e-admin"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def weir_factory(tmp_path):
    started = []

    def start(config_text="", env=None):
        w = Weir(config_text, tmp_path, env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
