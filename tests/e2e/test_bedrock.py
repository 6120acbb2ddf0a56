"""Bedrock through the binary, checked by an independent signer: a local stand-in of
bedrock-runtime receives Weir's signed request, and botocore (AWS's own Python signer)
recomputes the signature from what arrived."""
import datetime
import http.server
import json
import threading
from unittest import mock
from urllib.parse import unquote

import anthropic
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import CLIENT_KEY

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


class StandIn:
    """Answers InvokeModel like Bedrock and keeps the raw request."""

    def __init__(self):
        self.requests = []
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                up.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                answer = json.dumps({
                    "id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                    "content": [{"type": "text", "text": "Signed and served."}], "stop_reason": "end_turn",
                    "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 4},
                }).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("x-amzn-requestid", "req-1")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def botocore_authorization(url, path, headers, body):
    """The Authorization header botocore computes for the request as it arrived."""
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    when = datetime.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    req = AWSRequest(method="POST", url=url + path, data=body,
                     headers={h: headers[h] for h in signed if h != "host"})
    fake = mock.Mock(wraps=datetime.datetime)
    fake.utcnow.return_value = when
    fake.now.return_value = when.replace(tzinfo=datetime.timezone.utc)
    with mock.patch.object(botocore.auth.datetime, "datetime", fake):
        botocore.auth.SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "bedrock", "us-west-2").add_auth(req)
    return req.headers["Authorization"]


def test_weirs_sigv4_signature_is_what_botocore_computes(weir_factory):
    up = StandIn()
    w = weir_factory(
        f'[providers.bedrock]\nkind = "bedrock"\nregion = "us-west-2"\nbase_url = "{up.url}"\n'
        f'[[models]]\nname = "sonnet"\ntargets = [{{ provider = "bedrock", model = "{MODEL}" }}]\n',
        env={"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_SESSION_TOKEN": "",
             "AWS_BEARER_TOKEN_BEDROCK": "", "AWS_PROFILE": "", "HOME": "/nonexistent"},
    )
    c = anthropic.Anthropic(base_url=w.url, auth_token=CLIENT_KEY, api_key=None, max_retries=0)
    m = c.messages.create(model="sonnet", max_tokens=16, messages=[{"role": "user", "content": "Hi"}],
                          extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert m.content[0].text == "Signed and served."
    path, headers, body = up.requests[0]
    assert unquote(path) == f"/model/{MODEL}/invoke"
    sent = json.loads(body)
    assert sent["anthropic_version"] == "bedrock-2023-05-31"
    assert "model" not in sent and "stream" not in sent
    assert sent["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert headers["authorization"] == botocore_authorization(up.url, path, headers, body)
