"""The official SDKs against the real binary: both dialects, streaming and not, tool
loops with ids intact, thinking passthrough, errors, graceful shutdown."""
import json
import signal
import threading
import time

import anthropic
import openai
import pytest

from conftest import CLIENT_KEY, FIXTURES, UPSTREAM_KEY

TOOLS_A = [
    {"name": n, "description": f"Look up {n}.", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    for n in ("get_weather", "get_time", "get_news")
]
TOOLS_O = [{"type": "function", "function": {"name": t["name"], "description": t["description"], "parameters": t["input_schema"]}} for t in TOOLS_A]
ASK_TOOLS = "Use get_weather, get_time and get_news for city=Paris"


def a_client(w):
    return anthropic.Anthropic(base_url=w.url, auth_token=CLIENT_KEY, api_key=None, max_retries=0)


def o_client(w):
    return openai.OpenAI(base_url=w.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def test_openai_sdk_plain_and_streaming(weir_factory):
    w = weir_factory()
    c = o_client(w)
    r = c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content == "Mock reply to: hello"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0
    chunks = list(c.chat.completions.create(model="mock", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "hello"}]))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Mock reply to: hello"
    assert chunks[-1].usage.completion_tokens > 0


def test_anthropic_sdk_plain_and_streaming_with_beta_endpoint(weir_factory):
    w = weir_factory()
    c = a_client(w)
    m = c.messages.create(model="mock", max_tokens=100, messages=[{"role": "user", "content": "hello"}])
    assert m.content[0].text == "Mock reply to: hello"
    assert m.stop_reason == "end_turn"
    with c.beta.messages.stream(model="mock", max_tokens=100, messages=[{"role": "user", "content": "hello"}],
                                betas=["interleaved-thinking-2025-05-14"]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Mock reply to: hello"
    assert final.usage.output_tokens > 0
    # The SDK overwrites its input count with any message_delta carries: the gateway must
    # not send an unknown one as 0.
    assert final.usage.input_tokens == m.usage.input_tokens > 0
    with c.messages.stream(model="mock", max_tokens=100, messages=[{"role": "user", "content": "hello"}]) as s:
        assert s.get_final_message().usage.input_tokens == m.usage.input_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_three_parallel_tool_calls_round_trip_with_ids_intact_anthropic(weir_factory, stream):
    w = weir_factory()
    c = a_client(w)
    msgs = [{"role": "user", "content": ASK_TOOLS}]
    if stream:
        with c.messages.stream(model="mock", max_tokens=500, tools=TOOLS_A, messages=msgs) as s:
            first = s.get_final_message()
    else:
        first = c.messages.create(model="mock", max_tokens=500, tools=TOOLS_A, messages=msgs)
    calls = [b for b in first.content if b.type == "tool_use"]
    assert [b.name for b in calls] == ["get_weather", "get_time", "get_news"]
    assert len({b.id for b in calls}) == 3
    assert all(b.input["city"] for b in calls)
    msgs += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": b.id, "content": f"{b.name} ok"} for b in calls]}]
    second = c.messages.create(model="mock", max_tokens=500, tools=TOOLS_A, messages=msgs)
    text = second.content[0].text
    for b in calls:
        assert f"Tool result for {b.name}: {b.name} ok" in text


@pytest.mark.parametrize("stream", [False, True])
def test_three_parallel_tool_calls_round_trip_with_ids_intact_openai(weir_factory, stream):
    w = weir_factory()
    c = o_client(w)
    msgs = [{"role": "user", "content": ASK_TOOLS}]
    if stream:
        calls = {}
        for ch in c.chat.completions.create(model="mock", tools=TOOLS_O, messages=msgs, stream=True):
            for tc in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
                slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                slot["id"] = tc.id or slot["id"]
                slot["name"] = (tc.function.name if tc.function else None) or slot["name"]
                slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
        calls = [calls[i] for i in sorted(calls)]
    else:
        r = c.chat.completions.create(model="mock", tools=TOOLS_O, messages=msgs)
        assert r.choices[0].finish_reason == "tool_calls"
        calls = [{"id": t.id, "name": t.function.name, "arguments": t.function.arguments} for t in r.choices[0].message.tool_calls]
    assert [t["name"] for t in calls] == ["get_weather", "get_time", "get_news"]
    assert all(json.loads(t["arguments"])["city"] for t in calls)
    msgs.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": t["id"], "type": "function", "function": {"name": t["name"], "arguments": t["arguments"]}} for t in calls]})
    msgs += [{"role": "tool", "tool_call_id": t["id"], "content": f"{t['name']} ok"} for t in calls]
    r = c.chat.completions.create(model="mock", tools=TOOLS_O, messages=msgs)
    for t in calls:
        assert f"Tool result for {t['name']}: {t['name']} ok" in r.choices[0].message.content


def test_thinking_passes_through_to_anthropic_clients_and_shows_as_reasoning_for_openai(weir_factory, upstream):
    body = (FIXTURES / "anthropic/claude_code_thinking_stream/00.response.body").read_bytes()
    upstream.routes["/v1/messages"] = (200, "text/event-stream", body)
    w = weir_factory(f'[providers.anthropic]\nkind = "anthropic"\nbase_url = "{upstream.url}"\nkeys = ["{UPSTREAM_KEY}"]\n'
                     '[[models]]\nname = "claude-*"\ntargets = [{ provider = "anthropic" }]\n')
    with a_client(w).messages.stream(model="claude-sonnet-4-5", max_tokens=32000,
                                     thinking={"type": "enabled", "budget_tokens": 2000},
                                     messages=[{"role": "user", "content": "what files?"}]) as s:
        final = s.get_final_message()
    thinking = final.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == "The listing shows a Rust workspace."
    assert thinking.signature == "EqQBCkgIBxABGAIqQGt7dW5pcXVlLXNpZw=="
    path, headers, sent = upstream.requests[-1]
    assert headers["x-api-key"] == UPSTREAM_KEY and "authorization" not in headers
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2000}

    reasoning, text = "", ""
    for ch in o_client(w).chat.completions.create(model="claude-sonnet-4-5", stream=True,
                                                  messages=[{"role": "user", "content": "what files?"}]):
        if ch.choices:
            d = ch.choices[0].delta
            reasoning += (d.model_extra or {}).get("reasoning_content") or ""
            text += d.content or ""
    assert reasoning == "The listing shows a Rust workspace."
    assert text.startswith("This is a Rust workspace")


def test_openai_sdk_web_search_reaches_claude_and_its_citations_come_back_as_annotations(weir_factory, upstream):
    cite = {"type": "web_search_result_location", "url": "https://news.example/a", "title": "A",
            "cited_text": "rain", "encrypted_index": "E"}
    answer = {
        "id": "msg_ws", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "Lyon weather"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "text", "text": "In Lyon: "},
            {"type": "text", "text": "rain all day", "citations": [cite]},
        ],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 8, "server_tool_use": {"web_search_requests": 1}},
    }
    upstream.routes["/v1/messages"] = (200, "application/json", json.dumps(answer).encode())
    w = weir_factory(f'[providers.anthropic]\nkind = "anthropic"\nbase_url = "{upstream.url}"\nkeys = ["{UPSTREAM_KEY}"]\n'
                     '[[models]]\nname = "claude-*"\ntargets = [{ provider = "anthropic" }]\n')
    r = o_client(w).chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Weather in Lyon?"}],
        web_search_options={"user_location": {"type": "approximate", "approximate": {"city": "Lyon", "country": "FR"}}})
    msg = r.choices[0].message
    assert msg.content == "In Lyon: rain all day"
    assert msg.tool_calls is None and r.choices[0].finish_reason == "stop"
    [a] = msg.annotations
    assert a.type == "url_citation" and a.url_citation.url == "https://news.example/a"
    assert msg.content[a.url_citation.start_index:a.url_citation.end_index] == "rain all day"
    _, _, sent = upstream.requests[-1]
    assert sent["tools"] == [{"type": "web_search_20250305", "name": "web_search",
                              "user_location": {"type": "approximate", "city": "Lyon", "country": "FR"}}]


def test_openai_sdk_stream_helper_gets_the_citations_of_a_streamed_web_search(weir_factory, upstream):
    def cite(url):
        return {"type": "web_search_result_location", "url": url, "title": "T", "cited_text": "x", "encrypted_index": "E"}
    events = [{"type": "message_start", "message": {"id": "msg_ws", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                                                     "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 1}}}]
    for i, (text, url) in enumerate([("Intro. ", None), ("Rain in Lyon.", "https://a.example"), (" Sun in Nice.", "https://b.example")]):
        start = {"type": "text", "text": ""}
        if url:
            start["citations"] = []
        events.append({"type": "content_block_start", "index": i, "content_block": start})
        if url:
            events.append({"type": "content_block_delta", "index": i, "delta": {"type": "citations_delta", "citation": cite(url)}})
        events.append({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": text}})
        events.append({"type": "content_block_stop", "index": i})
    events += [{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 9}},
               {"type": "message_stop"}]
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
    upstream.routes["/v1/messages"] = (200, "text/event-stream", body)
    w = weir_factory(f'[providers.anthropic]\nkind = "anthropic"\nbase_url = "{upstream.url}"\nkeys = ["{UPSTREAM_KEY}"]\n'
                     '[[models]]\nname = "claude-*"\ntargets = [{ provider = "anthropic" }]\n')
    with o_client(w).chat.completions.stream(model="claude-sonnet-4-5", web_search_options={},
                                             messages=[{"role": "user", "content": "Weather?"}]) as s:
        for _ in s:
            pass
        msg = s.get_final_completion().choices[0].message
    assert msg.content == "Intro. Rain in Lyon. Sun in Nice."
    spans = [(a.url_citation.url, msg.content[a.url_citation.start_index:a.url_citation.end_index]) for a in msg.annotations]
    assert spans == [("https://a.example", "Rain in Lyon."), ("https://b.example", " Sun in Nice.")]


def test_openai_upstream_behind_the_anthropic_sdk_keeps_tool_ids(weir_factory, upstream):
    body = (FIXTURES / "openai/parallel_tools_stream/00.response.body").read_bytes()
    upstream.routes["/v1/chat/completions"] = (200, "text/event-stream", body)
    w = weir_factory(f'[providers.openai]\nkind = "openai"\nbase_url = "{upstream.url}/v1"\nkeys = ["{UPSTREAM_KEY}"]\n'
                     '[[models]]\nname = "gpt-*"\ntargets = [{ provider = "openai" }]\n')
    with a_client(w).messages.stream(model="gpt-4o", max_tokens=100, tools=TOOLS_A,
                                     messages=[{"role": "user", "content": "weather?"}]) as s:
        final = s.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    assert [b.id for b in calls] == ["call_Paris", "call_Tokyo", "call_Lima"]
    assert [b.input for b in calls] == [{"city": "Paris"}, {"city": "Tokyo"}, {"city": "Lima"}]
    assert final.stop_reason == "tool_use"
    _, headers, sent = upstream.requests[-1]
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["tools"][0]["function"]["name"] == "get_weather"


def test_errors_reach_the_sdks_as_their_own_exceptions(weir_factory):
    w = weir_factory()
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=w.url, api_key="sk-wrong", max_retries=0).messages.create(
            model="mock", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=w.url + "/v1", api_key="sk-wrong", max_retries=0).chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.NotFoundError) as e:
        a_client(w).messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "available: mock" in str(e.value)
    with pytest.raises(anthropic.RateLimitError) as e:
        a_client(w).messages.create(model="mock", max_tokens=10, messages=[{"role": "user", "content": "[mock:error:429]"}])
    assert e.value.response.headers["retry-after"] == "1"
    with pytest.raises(anthropic.APIStatusError) as e:
        a_client(w).messages.create(model="mock", max_tokens=10, messages=[{"role": "user", "content": "[mock:error:529]"}])
    assert e.value.status_code == 529
    with pytest.raises(openai.InternalServerError) as e:
        o_client(w).chat.completions.create(model="mock", messages=[{"role": "user", "content": "[mock:error:529]"}])
    assert e.value.status_code == 503


def test_mid_stream_failures_end_the_stream_with_an_error_in_each_dialect(weir_factory):
    w = weir_factory()
    with pytest.raises(anthropic.APIStatusError):
        with a_client(w).messages.stream(model="mock", max_tokens=100,
                                         messages=[{"role": "user", "content": "hi [mock:error-after-first:500]"}]) as s:
            for _ in s:
                pass
    with pytest.raises(openai.APIError):
        for _ in o_client(w).chat.completions.create(model="mock", stream=True,
                                                     messages=[{"role": "user", "content": "hi [mock:error-after-first:500]"}]):
            pass


def test_sigterm_lets_an_in_flight_stream_finish_then_exits_zero(weir_factory):
    w = weir_factory('[providers.slow]\nkind = "mock"\nstream_delay = "30ms"\n'
                     '[[models]]\nname = "slow-mock"\ntargets = [{ provider = "slow", model = "mock" }]\n')
    stream = o_client(w).chat.completions.create(model="slow-mock", stream=True,
                                                 messages=[{"role": "user", "content": "a long answer please"}])
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stopper = threading.Timer(0.1, lambda: w.proc.send_signal(signal.SIGTERM))
    stopper.start()
    rest = list(stream)
    assert rest and rest[-1].choices[0].finish_reason == "stop"
    assert w.proc.wait(15) == 0


def test_a_second_sigterm_ends_the_grace_period_at_once(weir_factory):
    # shutdown_grace is 5 s; the stream would take far longer.
    w = weir_factory('[providers.slow]\nkind = "mock"\nstream_delay = "500ms"\n'
                     '[[models]]\nname = "slow-mock"\ntargets = [{ provider = "slow", model = "mock" }]\n')
    stream = o_client(w).chat.completions.create(model="slow-mock", stream=True,
                                                 messages=[{"role": "user", "content": "a long answer please"}])
    next(iter(stream))
    with a_client(w).messages.stream(model="slow-mock", max_tokens=100,
                                     messages=[{"role": "user", "content": "a long answer please"}]) as a_stream:
        next(iter(a_stream))
        w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while "shutting down" not in w.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # (the second signal is listened for from just after the first)
        started = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(15) == 0
        assert time.monotonic() - started < 3, w.logs()
        assert "told again to stop" in w.logs()
        # The streams cut end with an error event each SDK raises (not a broken body).
        with pytest.raises(anthropic.APIStatusError, match="shutting down") as e:
            for _ in a_stream:
                pass
        assert e.value.body["error"]["type"] == "overloaded_error"
    with pytest.raises(openai.APIError, match="shutting down"):
        for _ in stream:
            pass


def test_openai_sdk_embeddings_both_encodings(weir_factory):
    w = weir_factory()
    c = o_client(w)
    # The SDK asks for base64 unless told otherwise, and decodes it.
    r = c.embeddings.create(model="mock", input=["hello", "world", "hello"])
    vectors = [d.embedding for d in r.data]
    assert [d.index for d in r.data] == [0, 1, 2]
    assert len(vectors[0]) == 8 and vectors[0] == vectors[2] != vectors[1]
    assert abs(sum(x * x for x in vectors[1]) - 1.0) < 1e-4
    assert r.usage.prompt_tokens == 3
    f = c.embeddings.create(model="mock", input="hello", encoding_format="float", dimensions=4)
    assert len(f.data[0].embedding) == 4
    with pytest.raises(openai.NotFoundError):
        c.embeddings.create(model="no-such-model", input="x")


CLAUDE_TOOL_ANSWER = json.dumps({
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "Check the weather.", "signature": "sig-abc"},
        {"type": "text", "text": "Looking it up."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 30, "output_tokens": 12},
}).encode()

CLAUDE_TEXT_STREAM = "".join(
    f"event: {e}\ndata: {json.dumps(d)}\n\n"
    for e, d in [
        ("message_start", {"type": "message_start", "message": {"id": "msg_2", "type": "message", "role": "assistant",
                                                               "model": "claude-sonnet-4-5", "content": [], "stop_reason": None,
                                                               "usage": {"input_tokens": 40, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "It is "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "sunny."}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 5}}),
        ("message_stop", {"type": "message_stop"}),
    ]
).encode()


def test_openai_sdk_responses_api_reaches_claude_through_the_bridge(weir_factory, upstream):
    """Codex, the Agents SDK and the AI SDK speak only the Responses API: a Claude route
    serves it by translation, a tool loop with signed reasoning included."""
    upstream.routes["/v1/messages"] = (200, "application/json", CLAUDE_TOOL_ANSWER)
    upstream.routes["/s/v1/messages"] = (200, "text/event-stream", CLAUDE_TEXT_STREAM)
    w = weir_factory(
        f'[providers.claude]\nkind = "anthropic"\nbase_url = "{upstream.url}"\nkeys = ["{UPSTREAM_KEY}"]\n'
        f'[providers.claude_s]\nkind = "anthropic"\nbase_url = "{upstream.url}/s"\nkeys = ["{UPSTREAM_KEY}"]\n'
        '[[models]]\nname = "sonnet"\ntargets = [{ provider = "claude", model = "claude-sonnet-4-5" }]\n'
        '[[models]]\nname = "sonnet-s"\ntargets = [{ provider = "claude_s", model = "claude-sonnet-4-5" }]\n'
    )
    c = o_client(w)
    tools = [{"type": "function", "name": "get_weather", "description": "Weather by city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    r = c.responses.create(model="sonnet", input="Weather in Oslo?", tools=tools, reasoning={"effort": "medium"},
                           include=["reasoning.encrypted_content"], store=False)
    assert r.status == "completed"
    assert r.output_text == "Looking it up."
    calls = [o for o in r.output if o.type == "function_call"]
    assert [(c_.call_id, c_.name, json.loads(c_.arguments)) for c_ in calls] == [("toolu_01", "get_weather", {"city": "Oslo"})]
    assert r.usage.input_tokens == 30 and r.usage.output_tokens == 12
    # The next turn sends the output back with the tool's result, as Codex does.
    history = [{"role": "user", "content": "Weather in Oslo?"}]
    history += [o.model_dump(exclude_none=True) for o in r.output]
    history.append({"type": "function_call_output", "call_id": "toolu_01", "output": "sunny"})
    with c.responses.stream(model="sonnet-s", input=history, tools=tools, store=False) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == "It is sunny."
    assert final.output_text == "It is sunny."
    assert final.usage.input_tokens == 40 and final.usage.output_tokens == 5
    sent = upstream.requests[-1][2]
    assistant = sent["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0] == {"type": "thinking", "thinking": "Check the weather.", "signature": "sig-abc"}
    assert [b["type"] for b in assistant["content"][1:]] == ["text", "tool_use"]
    assert assistant["content"][2]["id"] == "toolu_01"
    result = sent["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_01"
    # State an OpenAI account keeps cannot be had from Claude: a clear 400.
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="sonnet", input="hi", previous_response_id=final.id)
    assert "previous_response_id" in str(e.value)


def test_openai_sdk_responses_api_plain_and_streaming(weir_factory):
    w = weir_factory()
    c = o_client(w)
    r = c.responses.create(model="mock", input="hello")
    assert r.output_text == "Mock reply to: hello"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    r = c.responses.create(model="mock", input=[{"role": "user", "content": [{"type": "input_text", "text": "hi there"}]}])
    assert r.output_text == "Mock reply to: hi there"
    with c.responses.stream(model="mock", input="hello") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == "Mock reply to: hello"
    assert final.output_text == "Mock reply to: hello"
    assert final.usage.output_tokens > 0
    with pytest.raises(openai.RateLimitError):
        c.responses.create(model="mock", input="[mock:error:429]")
