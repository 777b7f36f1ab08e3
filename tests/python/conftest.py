"""Fixtures: evaltap's simulated upstream, `evaltap serve`, and a real LiteLLM proxy, each a
subprocess on a free loopback port, stopped at the end of the session."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

EVALTAP = os.environ.get("EVALTAP_BIN", "evaltap")
SOURCE_KEY = "etk_python_tests"
# A read-only API token; evaltap.toml holds only its SHA-256.
READ_TOKEN = "etk_python_tests_reader"
READ_TOKEN_SHA256 = "ddafe7b7be531bcecf1e91d7e91ca0e5f2ce9c8fba28640db37478516b884b86"
LITELLM_MASTER_KEY = "sk-litellm-master-5f2c9a7e41d8b3c6"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, process: subprocess.Popen, log_path: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited {process.returncode}:\n{open(log_path).read()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {timeout}s:\n{open(log_path).read()[-4000:]}")


def spawn(args, log_path, env=None):
    log = open(log_path, "w")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def serve(args, log_path, ready_url, timeout, env=None, stop_timeout=10):
    """Starts a server process, waits until `ready_url` answers, yields, then stops it."""
    p = spawn(args, log_path, env)
    wait_http(ready_url, timeout, p, log_path)
    yield
    p.terminate()
    p.wait(stop_timeout)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("evaltap")


@pytest.fixture(scope="session")
def sim(workdir):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    for _ in serve([EVALTAP, "sim", "--port", str(port), "--latency-scale", "0"], str(workdir / "sim.log"),
                   url + "/models", 30):
        yield url


@pytest.fixture(scope="session")
def evaltap(workdir, sim):
    port = free_port()
    config = workdir / "evaltap.toml"
    config.write_text(
        f"""
database_url = "sqlite://{workdir}/evaltap.db"
bind = "127.0.0.1:{port}"

[[sources]]
name = "litellm"
format = "litellm"
key = "{SOURCE_KEY}"

[[sources]]
name = "app"
key = "{SOURCE_KEY}-app"
upstream = "{sim}"

[[candidates]]
name = "small"
base_url = "{sim}"
model = "sim-small"
input_per_mtok = 0.10
output_per_mtok = 0.40

[judge]
base_url = "{sim}"
model = "sim-judge"
input_per_mtok = 1.00
output_per_mtok = 4.00

[[auth.tokens]]
name = "python-tests"
role = "read"
sha256 = "{READ_TOKEN_SHA256}"
"""
    )
    url = f"http://127.0.0.1:{port}"
    for _ in serve([EVALTAP, "serve", "--config", str(config), "--workers", "0"], str(workdir / "evaltap.log"),
                   url + "/healthz", 30):
        yield url


def evaltap_cli(workdir, *args) -> str:
    """Runs the evaltap CLI on the session's configuration; its standard output."""
    done = subprocess.run([EVALTAP, "--config", str(workdir / "evaltap.toml"), *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"evaltap {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def litellm_proxy(workdir, sim, evaltap):
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        f"""
model_list:
  - model_name: sim-large
    litellm_params:
      model: openai/sim-large
      api_base: {sim}
      api_key: sk-upstream-provider-key-do-not-store
general_settings:
  master_key: {LITELLM_MASTER_KEY}
litellm_settings:
  callbacks: ["evaltap"]
callback_settings:
  evaltap:
    callback_type: generic_api
    endpoint: {evaltap}/v1/mirror/litellm
    headers: {{Authorization: "Bearer {SOURCE_KEY}"}}
    event_types: ["llm_api_success", "llm_api_failure"]
    log_format: json_array
"""
    )
    litellm = os.path.join(os.path.dirname(sys.executable), "litellm")
    url = f"http://127.0.0.1:{port}"
    for _ in serve([litellm, "--config", str(config), "--port", str(port), "--host", "127.0.0.1"],
                   str(workdir / "litellm.log"), url + "/health/liveliness", 180,
                   env={"DEFAULT_BATCH_SIZE": "1", "LITELLM_LOG": "ERROR", "NO_DOCS": "True"}, stop_timeout=20):
        yield url


def stored_exchanges(evaltap_url: str, source: str, count: int, timeout: float = 60):
    deadline = time.time() + timeout
    found = []
    while time.time() < deadline:
        request = urllib.request.Request(f"{evaltap_url}/api/exchanges?source={source}&limit=1000",
                                         headers={"Authorization": f"Bearer {READ_TOKEN}"})
        with urllib.request.urlopen(request) as r:
            found = json.load(r)["exchanges"]
        if len(found) >= count:
            return found
        time.sleep(0.5)
    raise AssertionError(f"only {len(found)} of {count} exchanges reached evaltap from {source}")
