"""Claude Code, the flagship client, through Weir: a plain prompt and a tool loop, with the
mock model directly and behind an OpenAI-compatible and an Anthropic upstream (a second
Weir serving the mock in that dialect). Needs $WEIR_E2E_CLAUDE (a `claude` binary)."""
import os
import subprocess

import pytest

from conftest import CLIENT_KEY

CLAUDE = os.environ.get("WEIR_E2E_CLAUDE")
pytestmark = pytest.mark.skipif(not CLAUDE, reason="WEIR_E2E_CLAUDE is unset (path to Claude Code's `claude`)")


def claude(w, tmp_path, prompt, *args):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": w.url,
        "ANTHROPIC_AUTH_TOKEN": CLIENT_KEY,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    env.pop("ANTHROPIC_API_KEY", None)
    out = subprocess.run([CLAUDE, "-p", prompt, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


def every_model_to(target):
    return f'[[models]]\nname = "*"\ntargets = [{{ provider = "{target}", model = "mock" }}]\n'


def upstream_weir(weir_factory, kind):
    """A second Weir serving the mock; its API is the upstream of the first."""
    inner = weir_factory()
    base = inner.url + ("/v1" if kind == "openai" else "")
    return f'[providers.up]\nkind = "{kind}"\nbase_url = "{base}"\nkeys = ["{CLIENT_KEY}"]\n' + every_model_to("up")


@pytest.mark.parametrize("route", ["mock", "openai", "anthropic"])
def test_claude_code_prompt_and_tool_loop(weir_factory, tmp_path, route):
    config = every_model_to("mock") if route == "mock" else upstream_weir(weir_factory, route)
    w = weir_factory(config)
    assert claude(w, tmp_path, "hi") == "Mock reply to: hi"
    out = claude(w, tmp_path, 'Use the Bash tool with command="echo weir-tool-loop"', "--allowedTools", "Bash(echo:*)")
    assert out == "Tool result for Bash: weir-tool-loop", out


def test_claude_code_works_on_a_model_that_writes_less_than_it_asks(weir_factory, tmp_path):
    """Claude Code asks up to 128000 output tokens of whatever its names route to; an
    OpenAI model that writes fewer refuses such a request in OpenAI's words, which Claude
    Code cannot read: Weir asks again under the ceiling named, and remembers it."""
    import json

    from test_resilience import Scripted

    limits = []

    def chunk(delta, finish=None):
        return "data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

    def answer(path, key, body):
        n = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        limits.append(n)
        if n > 16384:
            msg = f"max_tokens is too large: {n}. This model supports at most 16384 completion tokens, whereas you provided {n}."
            return 400, {}, "application/json", json.dumps(
                {"error": {"message": msg, "type": "invalid_request_error", "param": "max_tokens", "code": None}}).encode()
        if body.get("stream"):
            text = (chunk({"role": "assistant", "content": ""}) + chunk({"content": "Fine under the ceiling"})
                    + chunk({}, "stop") + "data: [DONE]\n\n")
            return 200, {}, "text/event-stream", text.encode()
        return 200, {}, "application/json", json.dumps({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Fine under the ceiling"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}}).encode()

    up = Scripted(answer)
    try:
        w = weir_factory(
            f'[providers.up]\nkind = "openai"\nbase_url = "{up.url}/v1"\nkeys = ["sk-up"]\n'
            '[[models]]\nname = "*"\ntargets = [{ provider = "up", model = "gpt-4o" }]\n'
        )
        assert claude(w, tmp_path, "hi") == "Fine under the ceiling"
        assert claude(w, tmp_path, "hi again") == "Fine under the ceiling"
        # Refused once (Claude Code's 128000), then every request under the ceiling.
        assert sum(1 for n in limits if n > 16384) == 1, limits
        assert limits[-1] <= 16384, limits
    finally:
        up.close()
