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
