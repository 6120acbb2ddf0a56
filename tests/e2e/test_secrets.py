"""Secrets never reach /status, /metrics, logs or error bodies: recognizable keys are
configured (client, admin, upstream pool), requests are driven through every path that
could echo them (a wrong key, an upstream that echoes its key in a 401, rate limits,
success), and every output is searched for them."""
import json
import os
import urllib.request

import anthropic
import openai
import pytest

from test_resilience import Scripted, error, ok

NEEDLE = "NEEDLEx7Q"
UPSTREAM_KEYS = [f"sk-{NEEDLE}-upstream-1", f"sk-{NEEDLE}-upstream-2"]


def admin_get(w, path):
    req = urllib.request.Request(w.admin_url + path, headers={"authorization": "Bearer sk-e2e-admin"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode()


def test_recognizable_keys_appear_in_no_output(weir_factory):
    def answer(path, key, body):
        if key == UPSTREAM_KEYS[0]:
            return error(401, "authentication_error", f"invalid x-api-key: {key}")(path, key, body)
        return ok("fine")(path, key, body)

    up = Scripted(answer)
    # A Redis URL with a password (this Redis has none, so it refuses the login and the
    # gateway logs that it is unreachable: the password must not come with it).
    redis = os.environ.get("WEIR_TEST_REDIS_URL")
    state = ""
    if redis:
        host = redis.removeprefix("redis://").split("/")[0].rsplit("@", 1)[-1]
        state = f'[state]\nbackend = "redis"\nurl = "redis://weir:sk-{NEEDLE}-redis@{host}"\n'
    w = weir_factory(
        f'[providers.a]\nkind = "anthropic"\nbase_url = "{up.url}"\nkeys = {json.dumps(UPSTREAM_KEYS)}\n'
        f'[providers.b]\nkind = "anthropic"\nbase_url = "{up.url}"\nkeys = ["{UPSTREAM_KEYS[0]}"]\n'
        '[[models]]\nname = "m"\ntargets = [{ provider = "a" }]\n'
        '[[models]]\nname = "solo"\ntargets = [{ provider = "b" }]\n' + state,
        env={"WEIR_LOG": "debug"},
    )
    outputs = []
    a = anthropic.Anthropic(base_url=w.url, auth_token="sk-e2e-client-key", api_key=None, max_retries=0)
    o = openai.OpenAI(base_url=w.url + "/v1", api_key="sk-e2e-client-key", max_retries=0)
    for _ in range(4):
        raw = a.messages.with_raw_response.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        outputs.append(raw.http_response.text)
        outputs.append(json.dumps(dict(raw.headers)))
    with o.chat.completions.with_streaming_response.create(model="m", stream=True, messages=[{"role": "user", "content": "hi"}]) as s:
        outputs.append(s.read().decode())
    # The only key of `b` is refused, and the upstream echoes it: the client's error has it
    # scrubbed.
    with pytest.raises(anthropic.AuthenticationError) as e:
        a.messages.create(model="solo", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    outputs.append(e.value.response.text)
    assert "***" in e.value.response.text
    # A wrong client key that is itself recognizable: not echoed back or logged.
    bad = openai.OpenAI(base_url=w.url + "/v1", api_key=f"sk-{NEEDLE}-wrong-client", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    outputs.append(e.value.response.text)
    outputs.append(admin_get(w, "/status"))
    outputs.append(admin_get(w, "/metrics"))
    w.proc.terminate()
    w.proc.wait(10)
    outputs.append(w.logs())
    # The first upstream key was refused (and echoed by the upstream); the pool served on.
    status = json.loads(outputs[-3])
    keys = next(p for p in status["providers"] if p["id"] == "a")["keys"]
    assert keys[0]["state"] == "refused", keys
    for text in outputs:
        assert NEEDLE not in text, text[:2000]
    # The logs were really written (the search above is not vacuous).
    assert '"message":"request"' in outputs[-1]
    if redis:
        assert "Redis does not answer" in outputs[-1], outputs[-1][-3000:]
