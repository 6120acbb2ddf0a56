"""One JSON log line per request: request id (the one the client got), key name, model,
provider, status, latency, time to first token (streams only) and tokens; never the
prompt, the answer or a key."""
import json

import anthropic
import openai

PROMPT = "PROMPTx9Z tell me a secret"


def request_lines(logs):
    lines = []
    for line in logs.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("message") == "request":
            lines.append(rec)
    return lines


def test_each_request_logs_one_line_with_its_figures(weir_factory):
    w = weir_factory()
    a = anthropic.Anthropic(base_url=w.url, api_key="sk-e2e-client-key", max_retries=0)
    o = openai.OpenAI(base_url=w.url + "/v1", api_key="sk-e2e-client-key", max_retries=0)
    whole = a.messages.with_raw_response.create(
        model="mock", max_tokens=50, messages=[{"role": "user", "content": PROMPT}]
    )
    answer = whole.parse().content[0].text
    with o.chat.completions.with_streaming_response.create(
        model="mock", stream=True, messages=[{"role": "user", "content": PROMPT}]
    ) as s:
        streamed_id = s.headers["x-request-id"]
        s.read()
    bad = openai.OpenAI(base_url=w.url + "/v1", api_key="sk-e2e-wrong", max_retries=0)
    try:
        bad.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])
    except openai.AuthenticationError:
        pass
    w.stop()
    logs = w.logs()
    lines = request_lines(logs)
    assert len(lines) == 3, logs[-3000:]
    by_id = {rec["request_id"]: rec for rec in lines}

    rec = by_id[whole.headers["x-request-id"]]
    assert (rec["key"], rec["model"], rec["provider"], rec["status"]) == ("e2e", "mock", "mock", 200)
    assert rec["latency_ms"] >= 0
    assert rec["input_tokens"] > 0 and rec["output_tokens"] > 0
    # Not a stream: no time to first token, rather than a made-up value.
    assert "ttft_ms" not in rec, rec
    # Nothing went wrong: no error kind.
    assert "error_kind" not in rec, rec

    rec = by_id[streamed_id]
    assert (rec["key"], rec["model"], rec["provider"], rec["status"]) == ("e2e", "mock", "mock", 200)
    assert 0 <= rec["ttft_ms"] <= rec["latency_ms"], rec
    assert rec["output_tokens"] > 0, rec

    refused = [r for r in lines if r["status"] == 401]
    assert len(refused) == 1 and refused[0]["key"] == "-", refused
    assert refused[0]["error_kind"] == "Authentication", refused

    for needle in ["PROMPTx9Z", answer, "sk-e2e-client-key", "sk-e2e-wrong"]:
        assert needle not in logs, needle


def test_a_budget_s_blind_spots_are_logged_once_per_model(weir_factory, upstream):
    # A key with a daily budget, and models with no price: their cost cannot count. (The
    # built-in mock costs nothing: no warning for its answers.)
    answer = json.dumps({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }).encode()
    upstream.routes["/v1/chat/completions"] = (200, "application/json", answer)
    w = weir_factory(
        f'[providers.up]\nkind = "openai"\nbase_url = "{upstream.url}/v1"\nkeys = ["k"]\n'
        '[[auth.keys]]\nname = "capped"\nkey = "sk-e2e-capped"\ndaily_budget_usd = 1.0\n'
        '[[models]]\nname = "named"\ntargets = [{ provider = "up", model = "unpriced-named" }]\n'
        '[[models]]\nname = "fwd-*"\ntargets = [{ provider = "up" }]\n'
        '[[models]]\nname = "free-*"\ntargets = [{ provider = "mock" }]\n'
    )
    o = openai.OpenAI(base_url=w.url + "/v1", api_key="sk-e2e-capped", max_retries=0)
    for model in ["named", "fwd-one", "fwd-one", "named", "free-one"]:
        o.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    records = [json.loads(l) for l in w.logs().splitlines() if l.startswith("{")]
    warnings = [r.get("message") or r.get("fields", {}).get("message", "")
                for r in records if r.get("level") == "WARN"]
    priced = [m for m in warnings if "has no price" in m]
    assert len([m for m in priced if "`unpriced-named`" in m]) == 1, warnings
    assert len([m for m in priced if "`fwd-one`" in m]) == 1, warnings
    assert not [m for m in priced if "free-one" in m], warnings


def test_a_request_cut_by_shutdown_is_logged_as_the_gateway_s_not_the_client_s(weir_factory):
    """A request still waiting on its upstream when the grace period ends (here: a second
    SIGTERM) is logged 503 (overloaded), not 499 as if its client had left."""
    import signal
    import socket
    import threading
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    port = silent.getsockname()[1]
    w = weir_factory(
        f'[providers.hang]\nkind = "openai"\nbase_url = "http://127.0.0.1:{port}/v1"\nkeys = ["k"]\n'
        '[[models]]\nname = "hangs"\ntargets = [{ provider = "hang" }]\n'
    )
    o = openai.OpenAI(base_url=w.url + "/v1", api_key="sk-e2e-client-key", max_retries=0)
    failed = []

    def ask():
        try:
            o.chat.completions.create(model="hangs", messages=[{"role": "user", "content": "hi"}])
        except openai.APIError as e:
            failed.append(e)

    t = threading.Thread(target=ask)
    t.start()
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        time.sleep(0.02)
    assert held, "the request reached the upstream"
    w.proc.send_signal(signal.SIGTERM)
    while "shutting down" not in w.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # (the second signal is listened for from just after the first)
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(15) == 0
    t.join(10)
    assert failed, "the client got no answer"
    lines = [l for l in request_lines(w.logs()) if l.get("model") == "hangs"]
    assert [l["status"] for l in lines] == [503], w.logs()
    silent.close()


def test_a_warning_the_answer_carries_is_in_its_log_line(weir_factory):
    # A target without thinking, on a route that drops what its target lacks: the answer
    # says so in x-weir-warning, and so does the request's log line.
    w = weir_factory(
        '[[models]]\nname = "plain"\nunsupported = "drop"\n'
        'targets = [{ provider = "mock", model = "mock", capabilities = { thinking = false } }]\n'
    )
    a = anthropic.Anthropic(base_url=w.url, api_key="sk-e2e-client-key", max_retries=0)
    raw = a.messages.with_raw_response.create(
        model="plain", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "hi"}],
    )
    warning = raw.headers["x-weir-warning"]
    assert "thinking" in warning, warning
    plain = a.messages.with_raw_response.create(
        model="plain", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert "x-weir-warning" not in plain.headers
    w.stop()
    by_id = {rec["request_id"]: rec for rec in request_lines(w.logs())}
    assert by_id[raw.headers["x-request-id"]]["warning"] == warning
    assert "warning" not in by_id[plain.headers["x-request-id"]]
