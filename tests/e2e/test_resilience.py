"""Routing and resilience as the official SDKs see it: scripted upstreams that rate-limit,
fail with 5xx, fail with 400, fail before and after the first event, and drop mid-stream;
/status read between steps; distribution over targets counted."""
import http.server
import json
import threading
import time

import anthropic
import openai
import pytest

from conftest import CLIENT_KEY


class Scripted:
    """An upstream whose answer is computed per request by `self.answer(path, key, body)`,
    which returns (status, headers, content_type, payload) or a callable taking the raw
    handler (to write a broken response by hand). Records (path, key) of every request."""

    def __init__(self, answer):
        self.answer = answer
        self.seen = []
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                key = self.headers.get("x-api-key") or (self.headers.get("authorization") or "").removeprefix("Bearer ")
                up.seen.append((self.path.split("?")[0], key))
                out = up.answer(self.path.split("?")[0], key, body)
                if callable(out):
                    out(self)
                    return
                status, headers, ctype, payload = out
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hits(self, path="/v1/messages"):
        return sum(1 for p, _ in self.seen if p == path)

    def close(self):
        self.server.shutdown()


def sse(events):
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def message(text):
    return {"id": "msg_up", "type": "message", "role": "assistant", "model": "up-model",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 2}}


def opening():
    m = message("")
    m["content"], m["stop_reason"] = [], None
    return [("message_start", {"type": "message_start", "message": m}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})]


def stream_of(text):
    return sse(opening() + [
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 2}}),
        ("message_stop", {"type": "message_stop"}),
    ])


def ok(text):
    """Answers like Anthropic: a message, or a stream when asked."""
    def answer(path, key, body):
        if body.get("stream"):
            return 200, {}, "text/event-stream", stream_of(text)
        return 200, {}, "application/json", json.dumps(message(text)).encode()
    return answer


def error(status, etype, msg, headers=None):
    body = json.dumps({"type": "error", "error": {"type": etype, "message": msg}}).encode()
    return lambda path, key, b: (status, headers or {}, "application/json", body)


OVERLOADED_FIRST = sse([("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})])


@pytest.fixture
def scripted():
    made = []

    def make(answer):
        s = Scripted(answer)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def two_targets(a, b, routing="retries = 0"):
    return (f'[providers.a]\nkind = "anthropic"\nbase_url = "{a.url}"\nkeys = ["sk-up-a"]\n'
            f'[providers.b]\nkind = "anthropic"\nbase_url = "{b.url}"\nkeys = ["sk-up-b"]\n'
            '[[models]]\nname = "m"\ntargets = [{ provider = "a" }, { provider = "b" }]\n'
            f'[routing]\nretry_backoff = "10ms"\n{routing}\n')


def a_client(w):
    return anthropic.Anthropic(base_url=w.url, auth_token=CLIENT_KEY, api_key=None, max_retries=0)


def o_client(w):
    return openai.OpenAI(base_url=w.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def target(status, provider):
    return next(t for t in status["targets"] if t["provider"] == provider)


def test_a_529_fails_over_and_status_counts_it(weir_factory, scripted):
    a = scripted(error(529, "overloaded_error", "Overloaded"))
    b = scripted(ok("from b"))
    w = weir_factory(two_targets(a, b))
    raw = a_client(w).messages.with_raw_response.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-weir-provider"] == "b"
    assert raw.parse().content[0].text == "from b"
    r = o_client(w).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "from b"
    st = w.status()
    assert target(st, "a")["failures"] == 2
    assert target(st, "a")["breaker"] == "closed"
    assert target(st, "b")["requests"] == 2


def test_a_stream_failing_before_content_is_retried_invisibly(weir_factory, scripted):
    a = scripted(lambda p, k, body: (200, {}, "text/event-stream", OVERLOADED_FIRST))
    b = scripted(ok("the real answer"))
    w = weir_factory(two_targets(a, b))
    with a_client(w).messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
        assert "".join(s.text_stream) == "the real answer"
    chunks = list(o_client(w).chat.completions.create(model="m", stream=True, messages=[{"role": "user", "content": "hi"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "the real answer"
    assert a.hits() == 2
    assert target(w.status(), "a")["failures"] == 2


def test_after_content_a_drop_reaches_the_sdk_as_an_error(weir_factory, scripted):
    def drop(handler):
        # A chunked body that stops before its terminating chunk: the connection dies.
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        part = sse(opening() + [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                          "delta": {"type": "text_delta", "text": "Partial"}})])
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        handler.wfile.flush()
        time.sleep(0.1)
        handler.close_connection = True
        handler.connection.shutdown(2)

    a = scripted(lambda p, k, body: drop)
    b = scripted(ok("unused"))
    w = weir_factory(two_targets(a, b))
    got = []
    with pytest.raises(anthropic.APIStatusError) as e:
        with a_client(w).messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
            for t in s.text_stream:
                got.append(t)
    assert got == ["Partial"]
    assert "upstream" in str(e.value).lower()
    assert b.hits() == 0


def test_a_rate_limited_key_rests_and_the_pool_serves_on(weir_factory, scripted):
    def answer(path, key, body):
        if key == "sk-k1":
            return error(429, "rate_limit_error", "slow down", {"retry-after": "30"})(path, key, body)
        return ok(f"served with {key[-2:]}")(path, key, body)

    up = scripted(answer)
    w = weir_factory(f'[providers.p]\nkind = "anthropic"\nbase_url = "{up.url}"\nkeys = ["sk-k1", "sk-k2"]\n'
                     '[[models]]\nname = "m"\ntargets = [{ provider = "p" }]\n')
    c = o_client(w)
    for _ in range(4):
        r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == "served with k2"
    assert [k for _, k in up.seen].count("sk-k1") == 1
    keys = next(p for p in w.status()["providers"] if p["id"] == "p")["keys"]
    # Upstreams' limits are per model: the key rests for the model asked for.
    assert keys[0]["state"] == "ok" and keys[0]["rate_limited"] == 1
    assert [m["model"] for m in keys[0]["model_limits"]] == ["m"]
    assert 25_000 < keys[0]["model_limits"][0]["ms"] <= 30_000
    assert keys[1]["state"] == "ok"
    assert "sk-k1" not in json.dumps(w.status())


def test_all_rate_limited_is_a_429_with_the_smallest_retry_after(weir_factory, scripted):
    a = scripted(error(429, "rate_limit_error", "a is busy", {"retry-after": "40"}))
    b = scripted(error(429, "rate_limit_error", "b is busy", {"retry-after": "15"}))
    w = weir_factory(two_targets(a, b, "retries = 2"))
    with pytest.raises(anthropic.RateLimitError) as e:
        a_client(w).messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert e.value.response.headers["retry-after"] == "15"
    assert "every target is rate limited" in e.value.message
    with pytest.raises(openai.RateLimitError):
        o_client(w).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    # The second request spent nothing upstream: both keys were resting.
    assert (a.hits(), b.hits()) == (1, 1)


def test_a_400_is_returned_and_never_retried_elsewhere(weir_factory, scripted):
    a = scripted(error(400, "invalid_request_error", "messages: roles must alternate"))
    b = scripted(ok("unused"))
    w = weir_factory(two_targets(a, b, "retries = 2"))
    with pytest.raises(anthropic.BadRequestError) as e:
        a_client(w).messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert "roles must alternate" in e.value.message
    assert (a.hits(), b.hits()) == (1, 0)
    assert target(w.status(), "a")["failures"] == 0


def test_5xx_everywhere_retries_then_a_sanitized_502(weir_factory, scripted):
    a = scripted(lambda p, k, b: (500, {}, "text/html", b"<html><body>nginx internal error at 10.0.0.7</body></html>"))
    b = scripted(error(503, "api_error", "upstream maintenance"))
    w = weir_factory(two_targets(a, b, "retries = 1"))
    with pytest.raises(openai.APIStatusError) as e:
        o_client(w).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502
    assert "all targets failed: a (m): 500" in e.value.message
    assert "10.0.0.7" not in e.value.message and "sk-up" not in e.value.message
    assert (a.hits(), b.hits()) == (2, 2)


def test_round_robin_spreads_and_a_session_sticks(weir_factory, scripted):
    a, b = scripted(ok("a")), scripted(ok("b"))
    w = weir_factory(f'[providers.a]\nkind = "anthropic"\nbase_url = "{a.url}"\n'
                     f'[providers.b]\nkind = "anthropic"\nbase_url = "{b.url}"\n'
                     '[[models]]\nname = "m"\nstrategy = "round_robin"\ntargets = [{ provider = "a" }, { provider = "b" }]\n')
    c = o_client(w)
    served = [c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content
              for _ in range(10)]
    assert served.count("a") == 5 and served.count("b") == 5
    sticky = {c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                        extra_headers={"x-weir-session": "conversation-1"}).choices[0].message.content
              for _ in range(6)}
    assert len(sticky) == 1
