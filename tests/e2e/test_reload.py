"""Hot reload of the real binary: the config file changing, SIGHUP, and POST /reload on
the admin port; a config with errors is refused and the running one stays."""
import json
import signal
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import CLIENT_KEY


def client(w):
    return openai.OpenAI(base_url=w.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def ask(w, model):
    return client(w).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def serves(w, model, within=8.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            ask(w, model)
            return True
        except openai.NotFoundError:
            time.sleep(0.2)
    return False


def post_reload(w):
    req = urllib.request.Request(w.admin_url + "/reload", method="POST",
                                 headers={"authorization": "Bearer sk-e2e-admin"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


ALIAS = '[[models]]\nname = "{name}"\ntargets = [{{ provider = "mock", model = "mock" }}]\n'


def test_a_changed_file_sighup_and_post_reload_all_apply_and_a_broken_config_is_refused(weir_factory):
    w = weir_factory(ALIAS.format(name="first"))
    assert ask(w, "first").choices[0].message.content == "Mock reply to: hi"
    with pytest.raises(openai.NotFoundError):
        ask(w, "second")

    # The file changes: picked up within a few seconds.
    w.rewrite(ALIAS.format(name="second"))
    assert serves(w, "second"), w.logs()
    with pytest.raises(openai.NotFoundError):
        ask(w, "first")

    # A broken file is refused (logged), and the running config stays.
    w.rewrite('[providers.broken]\nkind = "nope"\n')
    status, body = post_reload(w)
    assert status == 400
    assert "the running config stays" in body["error"]["message"]
    assert any("unknown provider kind `nope`" in e for e in body["error"]["errors"]), body
    assert ask(w, "second").choices[0].message.content == "Mock reply to: hi"

    # POST /reload applies a good file at once.
    w.rewrite(ALIAS.format(name="third"))
    status, body = post_reload(w)
    assert (status, body) == (200, {"status": "reloaded"})
    assert ask(w, "third").choices[0].message.content == "Mock reply to: hi"

    # SIGHUP too.
    w.rewrite(ALIAS.format(name="fourth"))
    w.proc.send_signal(signal.SIGHUP)
    assert serves(w, "fourth"), w.logs()
    assert w.proc.poll() is None


def test_a_reload_that_would_leave_no_client_key_anyone_holds_is_refused_and_logged(weir_factory):
    # Started with client keys and no WEIR_API_KEY: a config without [[auth.keys]] would
    # mean a new random key nobody was told, and every request refused.
    w = weir_factory(ALIAS.format(name="first"), env={"WEIR_API_KEY": ""})
    w.config_path.write_text(w.prefix.replace(f'[[auth.keys]]\nname = "e2e"\nkey = "{CLIENT_KEY}"\n', "")
                             + ALIAS.format(name="second"))
    status, body = post_reload(w)
    assert status == 400, body
    assert any("no [[auth.keys]] and WEIR_API_KEY is not set" in e for e in body["error"]["errors"]), body
    assert ask(w, "first").choices[0].message.content == "Mock reply to: hi"
    deadline = time.monotonic() + 5
    while "reload (POST /reload) refused" not in w.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "reload (POST /reload) refused" in w.logs()


def test_one_edit_loaded_by_post_reload_is_not_loaded_again_by_the_file_watcher(weir_factory):
    # Reloading forgets nothing an upstream taught (rests, breakers), but a second reload of
    # the same text is still work and log noise: the watcher passes over a file whose text
    # is what is in force.
    w = weir_factory(ALIAS.format(name="first"))
    w.rewrite(ALIAS.format(name="second"))
    status, body = post_reload(w)
    assert (status, body) == (200, {"status": "reloaded"})
    # The watcher checks every two seconds: give it three turns.
    time.sleep(6.5)
    assert w.logs().count("config reloaded") == 1, w.logs()
    # A real edit is still picked up by the watcher.
    w.rewrite(ALIAS.format(name="third"))
    assert serves(w, "third"), w.logs()
    deadline = time.monotonic() + 3
    while w.logs().count("config reloaded") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert w.logs().count("config reloaded") == 2, w.logs()
