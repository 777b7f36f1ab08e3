"""The tee proxy driven by the official openai client: what it receives through evaltap is
byte-identical to calling the upstream directly, streaming and not, and the mirrored exchange
equals the assembled response."""

import json

import openai

from conftest import SOURCE_KEY, stored_exchanges


def request(kg: int) -> dict:
    return {"model": "sim-medium", "messages": [{"role": "user", "content": f"Convert {kg} kg to g. Reply with the number."}]}


def raw_bytes(client, body, stream):
    if stream:
        with client.chat.completions.with_streaming_response.create(stream=True, stream_options={"include_usage": True},
                                                                    **body) as r:
            return r.status_code, r.headers.get("content-type"), b"".join(r.iter_bytes())
    r = client.chat.completions.with_raw_response.create(**body)
    return r.status_code, r.headers.get("content-type"), r.http_response.content


def test_tee_proxy_is_transparent(sim, evaltap):
    direct = openai.OpenAI(base_url=sim, api_key="sk-client-key-not-stored")
    # The source key goes in its own header; the client's provider key stays in Authorization.
    proxied = openai.OpenAI(base_url=f"{evaltap}/proxy/app/v1", api_key="sk-client-key-not-stored",
                            default_headers={"X-Evaltap-Key": f"{SOURCE_KEY}-app"})
    # Each call asks something different: the simulated upstream's ids derive from content,
    # and evaltap deduplicates on them.
    assert raw_bytes(proxied, request(7), False) == raw_bytes(direct, request(7), False)
    assert raw_bytes(proxied, request(8), True) == raw_bytes(direct, request(8), True)

    parsed = proxied.chat.completions.create(**request(9))
    streamed_text = "".join(c.choices[0].delta.content or "" for c in
                            proxied.chat.completions.create(stream=True, **request(11)) if c.choices)
    expected_stream = direct.chat.completions.create(**request(11))
    assert streamed_text == expected_stream.choices[0].message.content

    stored = {s["exchange"]["request"]["messages"][0]["content"]: s["exchange"] for s in stored_exchanges(evaltap, "app", 4)}
    assert "sk-client-key-not-stored" not in json.dumps(stored)
    by_kg = {kg: stored[request(kg)["messages"][0]["content"]] for kg in (7, 8, 9, 11)}
    assert by_kg[9]["response"]["id"] == parsed.id
    assert by_kg[9]["response"]["choices"][0]["message"]["content"] == parsed.choices[0].message.content
    assert by_kg[9]["response"]["usage"]["completion_tokens"] == parsed.usage.completion_tokens
    mirrored = by_kg[11]["response"]
    assert mirrored["choices"][0]["message"]["content"] == streamed_text
    assert mirrored["id"] == expected_stream.id
    assert by_kg[11]["request"]["stream"] is True
    assert by_kg[8]["response"]["usage"]["total_tokens"] > 0, "usage from the stream's final chunk"
