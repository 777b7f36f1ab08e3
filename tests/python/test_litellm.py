"""A real LiteLLM proxy, its generic_api callback pointed at evaltap, driven by the official
openai client: every exchange arrives complete and redacted."""

import json

import openai

from conftest import LITELLM_MASTER_KEY, stored_exchanges

PROMPTS = [
    "What is 17 + 25? Reply with the number.",
    "Convert 4 km to m. Reply with the number.",
    "My email is jane.doe@example.com. What is 6 * 7? Reply with the number.",
    "Call me at +1 415-555-0100. What is 90 - 48? Reply with the number.",
]


def test_litellm_generic_api_tee(litellm_proxy, evaltap):
    client = openai.OpenAI(base_url=litellm_proxy, api_key=LITELLM_MASTER_KEY)
    answers = {}
    for prompt in PROMPTS:
        r = client.chat.completions.create(model="sim-large", temperature=0.1,
                                           messages=[{"role": "user", "content": prompt}])
        answers[prompt] = r.choices[0].message.content
    streamed_prompt = "What is 40 + 2? Reply with the number."
    chunks = client.chat.completions.create(model="sim-large", stream=True,
                                            messages=[{"role": "user", "content": streamed_prompt}])
    answers[streamed_prompt] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    stored = stored_exchanges(evaltap, "litellm", len(answers))
    assert len(stored) == len(answers)
    blob = json.dumps(stored)
    assert "jane.doe@example.com" not in blob and "555-0100" not in blob
    assert "sk-upstream-provider-key" not in blob and LITELLM_MASTER_KEY not in blob
    by_answer = {}
    for s in stored:
        ex = s["exchange"]
        assert ex["succeeded"]
        assert ex["external_id"], "LiteLLM's call id is the idempotency key"
        assert ex["usage"]["input_tokens"] > 0 and ex["usage"]["output_tokens"] > 0
        assert ex["latency_ms"] is not None and ex["latency_ms"] >= 0
        assert ex["model"]
        user = ex["request"]["messages"][-1]["content"]
        by_answer[user] = ex["response"]["choices"][0]["message"]["content"]
    redacted = {p.replace("jane.doe@example.com", "[REDACTED:email]").replace("+1 415-555-0100", "[REDACTED:phone]"): a
                for p, a in answers.items()}
    assert by_answer == redacted
