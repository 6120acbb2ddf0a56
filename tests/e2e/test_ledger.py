"""The ledger through the binary: one row per request written off the hot path to SQLite,
and `weir usage` reporting spend from it."""
import os
import subprocess
import urllib.request

import openai
import pytest

from conftest import CLIENT_KEY, ROOT


def test_requests_land_in_the_ledger_and_weir_usage_reports_them(weir_factory, tmp_path):
    db = tmp_path / "ledger" / "weir.db"
    w = weir_factory(
        f'[ledger]\nurl = "sqlite://{db}"\n'
        '[pricing.mock]\ninput = 1000000.0\noutput = 1000000.0\n'
    )
    c = openai.OpenAI(base_url=w.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    for _ in range(3):
        c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])
    list(c.chat.completions.create(model="mock", stream=True, messages=[{"role": "user", "content": "hi"}]))
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    req = urllib.request.Request(w.admin_url + "/metrics", headers={"authorization": "Bearer sk-e2e-admin"})
    with urllib.request.urlopen(req, timeout=5) as r:
        metrics = r.read().decode()
    assert "weir_ledger_dropped_rows 0" in metrics, metrics
    assert w.stop() == 0
    assert db.is_file()
    binary = os.environ.get("WEIR_BIN", str(ROOT / "target" / "debug" / "weir"))
    out = subprocess.run([binary, "usage", "--config", str(w.config_path), "--by", "key"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("e2e"))
    cols = line.split()
    # 5 requests, 1 error; 4 answered at $5 each (1 input and 4 output tokens at $1 per token).
    assert cols[1:3] == ["5", "1"], out.stdout
    assert float(cols[-1]) == pytest.approx(20.0), out.stdout
    out = subprocess.run([binary, "usage", "--config", str(w.config_path), "--by", "model", "--since", "1d"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert any(l.startswith("no-such-model") for l in out.stdout.splitlines()), out.stdout
    bad = subprocess.run([binary, "usage", "--config", str(w.config_path), "--by", "colour"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "key, model, provider, day" in bad.stderr


def test_requests_in_flight_at_sigterm_land_in_the_ledger(weir_factory, tmp_path):
    import signal
    import threading

    db = tmp_path / "ledger" / "weir.db"
    w = weir_factory(
        f'[ledger]\nurl = "sqlite://{db}"\n'
        '[providers.slow]\nkind = "mock"\nstream_delay = "40ms"\n'
        '[[models]]\nname = "slow-mock"\ntargets = [{ provider = "slow", model = "mock" }]\n',
        # Many runtimes: the streams are likely all on runtimes other than the first,
        # which holds the ledger's writer and is the first to finish draining.
        env={"WEIR_WORKER_THREADS": "16"},
    )
    finished = []
    started = threading.Semaphore(0)

    def ask():
        # A client each: separate connections, spread over the gateway's runtimes.
        c = openai.OpenAI(base_url=w.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        chunks = []
        for chunk in c.chat.completions.create(model="slow-mock", stream=True,
                                               messages=[{"role": "user", "content": "a long answer please"}]):
            if not chunks:
                started.release()
            chunks.append(chunk)
        finished.append(chunks[-1].choices[0].finish_reason)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    # Every stream is under way (on a busy machine the clients can take a while to
    # connect; one arriving after the signal would rightly be refused).
    for _ in threads:
        assert started.acquire(timeout=20)
    w.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(20)
    assert finished == ["stop"] * 6
    assert w.proc.wait(20) == 0
    binary = os.environ.get("WEIR_BIN", str(ROOT / "target" / "debug" / "weir"))
    out = subprocess.run([binary, "usage", "--config", str(w.config_path), "--by", "key"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("e2e"))
    assert line.split()[1] == "6", out.stdout + w.logs()


def test_a_stream_cut_at_the_end_of_the_grace_period_still_lands_in_the_ledger(weir_factory, tmp_path):
    import signal
    import threading

    db = tmp_path / "ledger" / "weir.db"
    w = weir_factory(
        f'[ledger]\nurl = "sqlite://{db}"\n'
        '[providers.slow]\nkind = "mock"\nstream_delay = "500ms"\n'
        '[[models]]\nname = "slow-mock"\ntargets = [{ provider = "slow", model = "mock" }]\n',
        env={"WEIR_WORKER_THREADS": "4"},
    )
    got = []
    started = threading.Event()

    def ask():
        c = openai.OpenAI(base_url=w.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        try:
            for chunk in c.chat.completions.create(model="slow-mock", stream=True,
                                                   messages=[{"role": "user", "content": "a long answer please"}]):
                got.append(chunk)
                started.set()
        except Exception:  # the gateway closes the stream when its grace period is over
            pass

    t = threading.Thread(target=ask)
    t.start()
    assert started.wait(20), "the stream started"
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(20) == 0
    t.join(10)
    assert got, "the stream had started"
    binary = os.environ.get("WEIR_BIN", str(ROOT / "target" / "debug" / "weir"))
    out = subprocess.run([binary, "usage", "--config", str(w.config_path), "--by", "key"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("e2e"))
    assert line.split()[1] == "1", out.stdout + w.logs()


def test_a_key_given_a_budget_by_a_reload_starts_from_what_the_ledger_says_it_spent(weir_factory, tmp_path):
    # As after a restart: a key that had no limits (so nothing counted its spend) and gains
    # a daily budget on reload has today's spend read from the ledger.
    import json

    db = tmp_path / "ledger" / "weir.db"
    rest = f'[ledger]\nurl = "sqlite://{db}"\n[pricing.mock]\ninput = 1000000.0\noutput = 1000000.0\n'
    w = weir_factory(rest)
    c = openai.OpenAI(base_url=w.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])
    budgeted = w.prefix.replace(f'key = "{CLIENT_KEY}"\n', f'key = "{CLIENT_KEY}"\ndaily_budget_usd = 1.0\n')
    assert budgeted != w.prefix
    w.config_path.write_text(budgeted + rest)
    req = urllib.request.Request(w.admin_url + "/reload", method="POST",
                                 headers={"authorization": "Bearer sk-e2e-admin"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read()) == {"status": "reloaded"}
    # $5 spent before the reload, against a budget of $1.
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])
    assert "daily budget" in str(e.value), e.value


def test_a_key_with_other_limits_given_a_budget_after_a_restart_counts_what_the_ledger_says(weir_factory, tmp_path):
    # The key spends $5, the gateway restarts; a reload gives the key a rate limit (so it
    # has counters, which know nothing of the spend before the restart), another gives it
    # a budget of $1: today's spend is read from the ledger, as for a key without limits.
    import json

    db = tmp_path / "ledger" / "weir.db"
    rest = f'[ledger]\nurl = "sqlite://{db}"\n[pricing.mock]\ninput = 1000000.0\noutput = 1000000.0\n'
    first = weir_factory(rest)
    c = openai.OpenAI(base_url=first.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])
    assert first.stop() == 0

    w = weir_factory(rest)
    c = openai.OpenAI(base_url=w.url + "/v1", api_key=CLIENT_KEY, max_retries=0)

    def reload(key_lines):
        prefix = w.prefix.replace(f'key = "{CLIENT_KEY}"\n', f'key = "{CLIENT_KEY}"\n{key_lines}')
        assert prefix != w.prefix
        w.config_path.write_text(prefix + rest)
        req = urllib.request.Request(w.admin_url + "/reload", method="POST",
                                     headers={"authorization": "Bearer sk-e2e-admin"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read()) == {"status": "reloaded"}

    reload("rpm = 1000\n")
    c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])
    reload("rpm = 1000\ndaily_budget_usd = 1.0\n")
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}])
    assert "daily budget" in str(e.value), e.value
    # Counted once: the ledger's $10 (the rows of both runs), not the ledger's and this
    # run's own count added.
    assert "($10.00 today)" in str(e.value), e.value
