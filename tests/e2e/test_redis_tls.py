"""Shared state over TLS (`rediss://`): two `weir` processes on one TLS Redis
(`WEIR_TEST_REDISS_URL`, its CA in `WEIR_TEST_REDISS_CA`; `.ci/run` starts one, and the
tests skip when unset), and a certificate the gateway does not trust refused."""
import os
import uuid

import anthropic
import pytest

from test_shared_state import ask_a, ask_o, eventually, limited_key, state

REDISS = os.environ.get("WEIR_TEST_REDISS_URL")
CA = os.environ.get("WEIR_TEST_REDISS_CA")
pytestmark = pytest.mark.skipif(
    not (REDISS and CA), reason="WEIR_TEST_REDISS_URL / WEIR_TEST_REDISS_CA are not set (a TLS Redis and its CA)"
)


def test_one_keys_rpm_is_counted_across_two_instances_over_tls(weir_factory):
    cfg = limited_key("rpm = 2") + state(REDISS, f"e2e-tls-{uuid.uuid4().hex[:8]}")
    # The CA is trusted the way upstream TLS trusts extra roots: SSL_CERT_FILE.
    env = {"SSL_CERT_FILE": CA}
    one, two = weir_factory(cfg, env=env), weir_factory(cfg, env=env)
    assert one.status()["state"] == {"backend": "redis", "reachable": True, "fail_mode": "open"}
    served, refused = 0, 0
    for i in range(4):
        try:
            ask_a(one) if i % 2 == 0 else ask_o(two)
            served += 1
        except anthropic.RateLimitError:
            refused += 1
        except Exception as e:  # the OpenAI SDK's own RateLimitError
            assert "requests per minute" in str(e), e
            refused += 1
    assert (served, refused) == (2, 2)


def test_a_certificate_the_gateway_does_not_trust_is_refused(weir_factory):
    # No trusted roots but the (empty) file: the TLS handshake must fail, not be skipped.
    w = weir_factory(state(REDISS, f"e2e-tls-{uuid.uuid4().hex[:8]}"), env={"SSL_CERT_FILE": os.devnull})
    eventually(lambda: "Redis does not answer" in w.logs(), "the refusal in the log")
    assert w.status()["state"]["reachable"] is False
    assert "certificate" in w.logs().lower() or "tls" in w.logs().lower(), w.logs()[-2000:]
