"""`evaltap recommend --format litellm`, loaded by the real LiteLLM proxy in front of the simulated
upstream: a request tagged with the route evaltap switched reaches the recommended model, the
others reach production."""

import os
import subprocess
import sys

import openai

from conftest import EVALTAP, LITELLM_MASTER_KEY, free_port, serve


# The key each gateway deployment reads from its environment: the export names the variable only.
KEY_ENV = {"SIM_API_KEY": "sk-sim-upstream-key"}


def run(*args, timeout=600) -> str:
    done = subprocess.run([EVALTAP, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **KEY_ENV})
    assert done.returncode == 0, f"evaltap {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_litellm_routes_the_switched_route_to_the_recommended_model(workdir, sim):
    database = f"sqlite://{workdir}/recommend.db"
    # Two routes of production traffic (the demo's: support lookups and math), then an experiment
    # of the small model alone, replayed against the session's simulated upstream.
    run("demo", "--json", "--exchanges", "800", "--database-url", database)
    config = workdir / "recommend.toml"
    config.write_text(
        f"""
database_url = "{database}"

[[candidates]]
name = "small"
base_url = "{sim}"
model = "sim-small"
api_key_env = "SIM_API_KEY"
input_per_mtok = 0.10
output_per_mtok = 0.40

[[candidates]]
name = "large"
base_url = "{sim}"
model = "sim-large"
api_key_env = "SIM_API_KEY"
input_per_mtok = 2.50
output_per_mtok = 10.00

[judge]
base_url = "{sim}"
model = "sim-judge"
input_per_mtok = 1.00
output_per_mtok = 4.00
"""
    )
    run("--config", str(config), "experiment", "create", "--name", "small-only", "--candidate", "small",
        "--rubric", "correctness", "--margin", "0.05")
    run("--config", str(config), "experiment", "run", "small-only")
    table = run("--config", str(config), "recommend", "small-only")
    assert "route=support" in table and "SWITCH sim-large → small (sim-small)" in table, table
    assert "route=math" in table and "KEEP sim-large" in table, table

    exported = workdir / "litellm-routes.yaml"
    run("--config", str(config), "recommend", "small-only", "--format", "litellm", "--out", str(exported))
    assert "api_key: os.environ/SIM_API_KEY" in exported.read_text()
    assert KEY_ENV["SIM_API_KEY"] not in exported.read_text()
    litellm_config = workdir / "litellm-routes-proxy.yaml"
    litellm_config.write_text(exported.read_text() + f"general_settings:\n  master_key: {LITELLM_MASTER_KEY}\n")

    port = free_port()
    litellm = os.path.join(os.path.dirname(sys.executable), "litellm")
    url = f"http://127.0.0.1:{port}"
    for _ in serve([litellm, "--config", str(litellm_config), "--port", str(port), "--host", "127.0.0.1"],
                   str(workdir / "litellm-routes.log"), url + "/health/liveliness", 180,
                   env={"LITELLM_LOG": "ERROR", "NO_DOCS": "True", **KEY_ENV}, stop_timeout=20):
        client = openai.OpenAI(base_url=url, api_key=LITELLM_MASTER_KEY)

        def answered_by(tags):
            extra = {"tags": tags} if tags is not None else {}
            reply = client.chat.completions.create(model="sim-large", extra_body=extra,
                                                   messages=[{"role": "user", "content": "Who are you?"}])
            # The simulated models introduce themselves on a prompt that is no task.
            return reply.choices[0].message.content

        for _ in range(3):
            assert "This is sim-small" in answered_by(["support"])
            assert "This is sim-large" in answered_by(["math"])
            assert "This is sim-large" in answered_by(None)
