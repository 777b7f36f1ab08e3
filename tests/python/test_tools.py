"""The traffic people really send, through real clients: the official openai client through a
real LiteLLM proxy with a tool-using conversation, and an Anthropic-format /v1/messages call
through LiteLLM. evaltap stores both as gateway logs them; the judge is shown the tools, the
earlier call and the answer's call; an experiment over them reports check:tool_call."""

import json
import urllib.request

import openai

from conftest import LITELLM_MASTER_KEY, evaltap_cli, stored_exchanges

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_tools_and_anthropic_messages_through_litellm(litellm_proxy, evaltap, workdir):
    before = len(stored_exchanges(evaltap, "litellm", 0))
    client = openai.OpenAI(base_url=litellm_proxy, api_key=LITELLM_MASTER_KEY)
    conversation = [
        {"role": "system", "content": "You are a travel assistant."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 18}"},
        {"role": "user", "content": "And what is the weather in Rome?"},
    ]
    answer = client.chat.completions.create(model="sim-large", messages=conversation, tools=TOOLS)
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Rome"}

    body = json.dumps({"model": "sim-large", "max_tokens": 64, "system": "Answer with the number only.",
                       "messages": [{"role": "user", "content": "What is 5 * 9? Reply with the number."}]}).encode()
    request = urllib.request.Request(f"{litellm_proxy}/v1/messages", data=body, method="POST",
                                     headers={"content-type": "application/json", "x-api-key": LITELLM_MASTER_KEY,
                                              "anthropic-version": "2023-06-01"})
    with urllib.request.urlopen(request, timeout=60) as r:
        message = json.load(r)
    assert message["type"] == "message" and message["content"][0]["text"].startswith("The answer is"), message

    stored = stored_exchanges(evaltap, "litellm", before + 2)
    with_tools = [s for s in stored if s["exchange"]["request"].get("tools")]
    assert len(with_tools) == 1, json.dumps(stored)[:2000]
    tool_exchange = with_tools[0]
    calls = tool_exchange["exchange"]["response"]["choices"][0]["message"]["tool_calls"]
    assert calls[0]["function"]["name"] == "get_weather"
    anthropic = [s for s in stored if "5 * 9" in json.dumps(s["exchange"]["request"])]
    assert len(anthropic) == 1, json.dumps(stored)[:2000]

    prompt = evaltap_cli(workdir, "rubric", "render", "tool_use", "--exchange", tool_exchange["id"])
    assert "get_weather: Weather for a city. parameters {" in prompt, prompt
    assert "assistant: [calls get_weather({\"city\":\"Paris\"})]" in prompt, prompt
    assert "### Response\n[calls get_weather({\"city\":\"Rome\"})]" in prompt, prompt
    # The Anthropic call's system prompt reaches the judge (LiteLLM logs it outside `messages`).
    prompt = evaltap_cli(workdir, "rubric", "render", "correctness", "--exchange", anthropic[0]["id"])
    assert "system: Answer with the number only." in prompt, prompt

    evaltap_cli(workdir, "experiment", "create", "--name", "litellm-tools", "--candidate", "small",
                "--rubric", "correctness", "--source", "litellm")
    evaltap_cli(workdir, "experiment", "run", "litellm-tools")
    report = json.loads(evaltap_cli(workdir, "report", "litellm-tools", "--json"))
    rubrics = {r["rubric"]: r for r in report["candidates"][0]["rubrics"]}
    assert "check:tool_call" in rubrics, list(rubrics)
    assert rubrics["check:tool_call"]["n"] == 1, rubrics["check:tool_call"]
