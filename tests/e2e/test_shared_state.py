"""Two `weir` processes on one real Redis (`WEIR_TEST_REDIS_URL`; skipped when unset), as
the official SDKs see them: one key's rpm counted across both, a cooldown one learns
respected by the other, and Redis going away and coming back while they serve."""
import os
import signal
import socket
import threading
import time
import uuid

import anthropic
import openai
import pytest

from test_resilience import error, ok, scripted  # noqa: F401 (the fixture)

REDIS = os.environ.get("WEIR_TEST_REDIS_URL")
pytestmark = pytest.mark.skipif(not REDIS, reason="WEIR_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)")

LIMITED_KEY = "sk-e2e-limited-key"


def state(url, prefix, extra=""):
    return f'[state]\nbackend = "redis"\nurl = "{url}"\nprefix = "{prefix}"\n{extra}'


def limited_key(limits):
    return f'[[auth.keys]]\nname = "limited"\nkey = "{LIMITED_KEY}"\n{limits}\n'


def a_client(w, key=LIMITED_KEY):
    return anthropic.Anthropic(base_url=w.url, auth_token=key, api_key=None, max_retries=0)


def o_client(w, key=LIMITED_KEY):
    return openai.OpenAI(base_url=w.url + "/v1", api_key=key, max_retries=0)


def ask_a(w):
    return a_client(w).messages.create(model="mock", max_tokens=10, messages=[{"role": "user", "content": "hi"}])


def ask_o(w):
    return o_client(w).chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])


def eventually(check, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_one_keys_rpm_is_counted_across_two_instances(weir_factory):
    cfg = limited_key("rpm = 4") + state(REDIS, f"e2e-{uuid.uuid4().hex[:8]}")
    one, two = weir_factory(cfg), weir_factory(cfg)
    served, refused = 0, []
    for i in range(8):
        try:
            ask_a(one) if i % 2 == 0 else ask_o(two)
            served += 1
        except (anthropic.RateLimitError, openai.RateLimitError) as e:
            refused.append(e)
    assert served == 4, refused
    assert len(refused) == 4
    for e in refused:
        assert 1 <= int(e.response.headers["retry-after"]) <= 15
        assert "4 requests per minute" in str(e)
    assert one.status()["state"] == {"backend": "redis", "reachable": True, "fail_mode": "open"}


def test_a_cooldown_set_by_one_instance_is_respected_by_the_other(weir_factory, scripted):
    def answer(path, key, body):
        if key == "sk-up-1":
            return error(429, "rate_limit_error", "slow down", {"retry-after": "60"})(path, key, body)
        return ok("served")(path, key, body)

    up = scripted(answer)
    cfg = (f'[providers.up]\nkind = "anthropic"\nbase_url = "{up.url}"\nkeys = ["sk-up-1", "sk-up-2"]\n'
           '[[models]]\nname = "m"\ntargets = [{ provider = "up" }]\n'
           + state(REDIS, f"e2e-{uuid.uuid4().hex[:8]}"))
    one, two = weir_factory(cfg), weir_factory(cfg)
    client = lambda w: anthropic.Anthropic(base_url=w.url, auth_token="sk-e2e-client-key", api_key=None, max_retries=0)
    for _ in range(2):
        client(one).messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    key1 = lambda w: next(p for p in w.status()["providers"] if p["id"] == "up")["keys"][0]
    assert sum(1 for _, k in up.seen if k == "sk-up-1") == 1
    # The key rests for the model asked for (upstreams' limits are per model).
    limited = lambda w: [(m["model"], m["ms"]) for m in key1(w).get("model_limits", [])]
    assert [m for m, _ in limited(one)] == ["m"]
    eventually(lambda: limited(two), "instance two to learn the cooldown")
    assert limited(two)[0][0] == "m" and limited(two)[0][1] > 50_000
    for _ in range(6):
        r = client(two).messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        assert r.content[0].text == "served"
    assert sum(1 for _, k in up.seen if k == "sk-up-1") == 1, up.seen
    # A reload starts the routing state afresh, but reads back what the shared store holds.
    two.rewrite(cfg + "# reloaded\n")
    two.proc.send_signal(signal.SIGHUP)
    eventually(lambda: "config reloaded" in two.logs(), "the reload")
    eventually(lambda: limited(two), "the cooldown after the reload")
    assert key1(two)["rate_limited"] == 0  # a fresh router: it learned this, it did not see it


class Relay:
    """A TCP relay to Redis that can cut every connection and refuse new ones."""

    def __init__(self, target):
        host, port = target.removeprefix("redis://").split("/")[0].rsplit("@", 1)[-1].rsplit(":", 1)
        self.target = (host, int(port))
        self.down = False
        self.conns = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                c.close()
                continue
            try:
                u = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.down = True
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns = []

    def restore(self):
        self.down = False

    def close(self):
        self.cut()
        self.listener.close()


def test_redis_going_away_is_logged_served_through_and_recovered_from(weir_factory):
    relay = Relay(REDIS)
    try:
        cfg = limited_key("rpm = 1000") + state(relay.url, f"e2e-{uuid.uuid4().hex[:8]}", 'timeout = "200ms"\n')
        w = weir_factory(cfg)
        ask_a(w)
        assert w.status()["state"]["reachable"] is True
        relay.cut()
        # Requests keep being served (fail open) while Redis is away.
        deadline = time.monotonic() + 10
        while w.status()["state"]["reachable"] and time.monotonic() < deadline:
            ask_o(w)
            time.sleep(0.05)
        assert w.status()["state"]["reachable"] is False
        for _ in range(5):
            assert ask_a(w).content[0].text
        logs = w.logs()
        assert "Redis is unreachable" in logs or "Redis does not answer" in logs, logs[-3000:]
        assert "counted by this instance alone" in logs
        relay.restore()
        eventually(lambda: w.status()["state"]["reachable"] is True, "Redis to be reachable again")
        assert "Redis answers again" in w.logs()
        ask_o(w)
    finally:
        relay.close()
