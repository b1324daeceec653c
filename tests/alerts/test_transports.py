"""The transports against real servers on loopback: aiosmtpd for email, a stdlib HTTP server
standing in for Slack and for a webhook receiver."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from perfdash.alerts.models import NotificationChannel
from perfdash.alerts.transports import Notification, Offender, TransportError, send
from perfdash.lib.http import PrivateAddressError, UnsafeUrlError, post_json
from tests.alerts.conftest import Handler, Mailbox, Receiver, serving
from tests.conftest import free_port

pytestmark = pytest.mark.django_db  # channels are real rows

SECRET_PATH = "/services/T0001/B0002/s3cr3tT0ken"
HMAC_SECRET = "hmac-shared-secret-42"
DASHBOARD = "http://perfdash.example.com/?window=5m"
RUNBOOK = "https://wiki.example.com/runbooks/latency"


# --- the world ---------------------------------------------------------------------------


def make_notification(**changes: object) -> Notification:
    fields: dict = {
        "rule_id": 7,
        "rule_name": "Response time p95",
        "severity": "critical",
        "metric": "agent_response_ms",
        "statistic": "p95",
        "comparison": "gt",
        "threshold": 2000.0,
        "state": "firing",
        "offenders": [
            Offender("agent-1", 2410.0),
            Offender("agent-2", 2150.5),
            Offender("agent-<3>", 3900.0),
        ],
        "runbook_url": RUNBOOK,
        "dashboard_url": DASHBOARD,
        "at": datetime(2026, 11, 28, 10, 0, 5, tzinfo=UTC),
        "scope": "agent",
    }
    return Notification(**{**fields, **changes})


@pytest.fixture
def untrusted_tls_server(settings, tmp_path: Path) -> Iterator[str]:
    """An HTTPS server with a self-signed certificate for 127.0.0.1."""
    settings.ALERTS_ALLOW_PRIVATE_URLS = True
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server) as address:
        yield f"https://{address}"


@pytest.fixture
def email_channel() -> NotificationChannel:
    return NotificationChannel.objects.create(
        name="on-call", kind="email", recipients="oncall@example.com,\nlead@example.com"
    )


def slack_channel(base: str) -> NotificationChannel:
    return NotificationChannel.objects.create(name="#alerts", kind="slack", url=base + SECRET_PATH)


def webhook_channel(base: str, secret: str = HMAC_SECRET) -> NotificationChannel:
    return NotificationChannel.objects.create(
        name="pager", kind="webhook", url=base + SECRET_PATH + "?key=querysecret", hmac_secret=secret
    )


def received_email(mailbox: Mailbox) -> EmailMessage:
    [envelope] = mailbox.messages
    return email.message_from_bytes(envelope.original_content, policy=email.policy.default)


def subject_of(message: EmailMessage) -> str:
    # Django folds an encoded subject onto a continuation line; mail clients drop the fold.
    return message["Subject"].strip()


# --- the human line ----------------------------------------------------------------------


def test_it_describes_milliseconds_as_seconds_past_a_second() -> None:
    n = make_notification(offenders=[Offender("agent-1", 2410.0)])
    assert n.summary == "p95 of agent_response_ms is 2.41 s (threshold > 2 s)"


def test_it_describes_small_latencies_in_milliseconds() -> None:
    n = make_notification(
        metric="memory_op_ms", comparison="gte", threshold=100, offenders=[Offender("a", 123.4)]
    )
    assert n.summary == "p95 of memory_op_ms is 123 ms (threshold ≥ 100 ms)"


def test_it_describes_bytes_as_megabytes() -> None:
    n = make_notification(
        metric="agent_memory_bytes",
        statistic="max",
        threshold=100e6,
        offenders=[Offender("a", 131_500_000.0)],
    )
    assert n.summary == "max of agent_memory_bytes is 132 MB (threshold > 100 MB)"


def test_it_describes_other_metrics_plainly() -> None:
    n = make_notification(
        metric="queue_depth", comparison="lt", threshold=0.5, offenders=[Offender("a", 0.25)]
    )
    assert n.summary == "p95 of queue_depth is 0.25 (threshold < 0.5)"


def test_it_says_when_there_is_no_data() -> None:
    n = make_notification(offenders=[Offender("a", None)])
    assert n.summary == "p95 of agent_response_ms has no data (threshold > 2 s)"


def test_it_names_the_worst_offender_first() -> None:
    n = make_notification(
        comparison="lt", offenders=[Offender("a", 5.0), Offender("b", None), Offender("c", 1.0)]
    )
    assert [o.subject for o in n.ranked()] == ["c", "a", "b"]


# --- email -------------------------------------------------------------------------------


def test_email_reaches_a_real_smtp_server(
    mailbox: Mailbox, email_channel: NotificationChannel, settings
) -> None:
    send(email_channel, make_notification())

    message = received_email(mailbox)
    assert subject_of(message) == "[FIRING critical] Response time p95 — 3 agents"
    assert message["From"] == settings.DEFAULT_FROM_EMAIL
    assert sorted(mailbox.messages[0].rcpt_tos) == ["lead@example.com", "oncall@example.com"]
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content()
    assert "p95 of agent_response_ms is 3.9 s (threshold > 2 s)" in text
    assert "agent-<3>: 3.9 s\n  agent-1: 2.41 s\n  agent-2: 2.15 s" in text
    assert f"Runbook: {RUNBOOK}" in text
    assert f"Dashboard: {DASHBOARD}" in text
    assert "As of 2026-11-28 10:00:05 UTC." in text
    assert f'<a href="{DASHBOARD}">' in html
    assert "<td>agent-&lt;3&gt;</td>" in html  # names are escaped, not markup
    assert f'<a href="{RUNBOOK}">Runbook</a>' in html


def test_email_for_the_fleet_names_it_and_leaves_out_a_missing_runbook(
    mailbox: Mailbox, email_channel: NotificationChannel
) -> None:
    send(
        email_channel,
        make_notification(state="resolved", offenders=[Offender("fleet", 1200.0)], runbook_url=""),
    )

    message = received_email(mailbox)
    assert subject_of(message) == "[RESOLVED critical] Response time p95 — fleet"
    text = message.get_body(("plain",)).get_content()
    assert "Runbook" not in text
    assert f"Dashboard: {DASHBOARD}" in text


def test_refused_recipients_are_permanent(mailbox: Mailbox, email_channel: NotificationChannel) -> None:
    mailbox.refuse_recipients = True

    with pytest.raises(TransportError) as failure:
        send(email_channel, make_notification())

    assert failure.value.permanent
    assert "SMTPRecipientsRefused" in str(failure.value)


def test_an_unreachable_mail_relay_is_transient(
    mailbox: Mailbox, email_channel: NotificationChannel, settings
) -> None:
    settings.EMAIL_PORT = free_port()

    with pytest.raises(TransportError) as failure:
        send(email_channel, make_notification())

    assert not failure.value.permanent


# --- Slack -------------------------------------------------------------------------------


def test_slack_gets_a_block_kit_message(receiver: tuple[Receiver, str]) -> None:
    server, base = receiver
    many = [Offender(f"agent-{i:02}", 2000.0 + i) for i in range(1, 14)]
    send(slack_channel(base), make_notification(offenders=many))

    [request] = server.requests
    assert request["path"] == SECRET_PATH
    assert request["headers"]["Content-Type"] == "application/json"
    message = json.loads(request["body"])
    summary = "p95 of agent_response_ms is 2.01 s (threshold &gt; 2 s)"  # Slack wants &, <, > escaped
    assert message["text"] == f"FIRING critical: Response time p95: {summary}"
    header, rule, offenders, links = message["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "FIRING · critical", "emoji": False},
    }
    assert message["mrkdwn"] is False
    assert rule["type"] == "section"
    assert rule["text"] == {
        "type": "plain_text",
        "text": "Response time p95\np95 of agent_response_ms is 2.01 s (threshold > 2 s)",
        "emoji": False,
    }
    lines = offenders["text"]["text"].split("\n")
    assert lines[0] == "• agent-13: 2.01 s"
    assert len(lines) == 11
    assert lines[-1] == "and 3 more"
    assert links["type"] == "context"
    assert links["elements"][0]["text"] == f"<{DASHBOARD}|Open in perfdash> · <{RUNBOOK}|Runbook>"


HOSTILE = "*bold* _it_ ~gone~ `code` <!channel> @here <https://evil.example|login> https://evil.example"


def test_slack_shows_names_as_plain_text(receiver: tuple[Receiver, str]) -> None:
    server, base = receiver
    send(slack_channel(base), make_notification(rule_name=HOSTILE, offenders=[Offender(HOSTILE, 3900.0)]))

    message = json.loads(server.requests[0]["body"])
    assert message["mrkdwn"] is False
    assert "<!channel>" not in message["text"] and "&lt;!channel&gt;" in message["text"]
    texts = [b["text"] for b in message["blocks"] if "text" in b]
    texts += [e for b in message["blocks"] for e in b.get("elements", [])]
    named = [t for t in texts if HOSTILE in t["text"]]
    assert len(named) == 2 and all(t["type"] == "plain_text" for t in named)
    assert all(HOSTILE not in t["text"] for t in texts if t["type"] == "mrkdwn")


@pytest.mark.parametrize(
    ("status", "answer", "permanent"),
    [
        (404, b"no_service", True),
        (410, b"", True),
        (403, b"invalid_token", True),
        (400, b"channel_is_archived", True),
        (400, b"invalid_payload", False),
        (429, b"rate_limited", False),
        (500, b"", False),
    ],
)
def test_slack_failures_are_classified(
    receiver: tuple[Receiver, str], status: int, answer: bytes, permanent: bool
) -> None:
    server, base = receiver
    server.status, server.answer = status, answer

    with pytest.raises(TransportError) as failure:
        send(slack_channel(base), make_notification())

    assert failure.value.permanent is permanent
    assert str(failure.value).startswith(f"Slack answered HTTP {status}")


# --- webhooks ----------------------------------------------------------------------------


def test_a_webhook_gets_the_documented_payload_signed(receiver: tuple[Receiver, str]) -> None:
    server, base = receiver
    send(
        webhook_channel(base), make_notification(offenders=[Offender("agent-1", 2410.0), Offender("b", None)])
    )

    [request] = server.requests
    assert request["path"] == SECRET_PATH + "?key=querysecret"
    body = request["body"]
    expected = hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert request["headers"]["X-Perfdash-Signature"] == f"sha256={expected}"
    payload = json.loads(body)
    assert request["headers"]["X-Perfdash-Timestamp"] == str(payload.pop("sent_at"))
    assert payload == {
        "version": 1,
        "rule_id": 7,
        "rule_name": "Response time p95",
        "state": "firing",
        "severity": "critical",
        "metric": "agent_response_ms",
        "statistic": "p95",
        "comparison": "gt",
        "threshold": 2000.0,
        "summary": "p95 of agent_response_ms is 2.41 s (threshold > 2 s)",
        "offenders": [{"subject": "agent-1", "value": 2410.0}, {"subject": "b", "value": None}],
        "at": "2026-11-28T10:00:05Z",
        "dashboard_url": DASHBOARD,
        "runbook_url": RUNBOOK,
        "kind": "threshold",
    }


def test_a_webhook_without_a_secret_is_not_signed(receiver: tuple[Receiver, str]) -> None:
    server, base = receiver
    send(webhook_channel(base, secret=""), make_notification())

    assert "X-Perfdash-Signature" not in server.requests[0]["headers"]


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        (404, True),
        (400, True),
        (401, True),
        (301, True),
        (408, False),
        (429, False),
        (500, False),
        (503, False),
    ],
)
def test_webhook_failures_are_classified(
    receiver: tuple[Receiver, str], status: int, permanent: bool
) -> None:
    server, base = receiver
    server.status = status

    with pytest.raises(TransportError) as failure:
        send(webhook_channel(base), make_notification())

    assert failure.value.permanent is permanent


@pytest.mark.parametrize("channel", [slack_channel, webhook_channel])
def test_a_closed_port_is_transient(settings, channel: Callable[[str], NotificationChannel]) -> None:
    settings.ALERTS_ALLOW_PRIVATE_URLS = True

    with pytest.raises(TransportError) as failure:
        send(channel(f"http://127.0.0.1:{free_port()}"), make_notification())

    assert not failure.value.permanent
    assert str(failure.value).endswith("127.0.0.1: Connection refused")


def test_a_server_that_trickles_its_answer_is_cut_at_the_timeout(receiver: tuple[Receiver, str]) -> None:
    server, base = receiver
    server.trickle, server.answer = True, b"x" * 100

    result = post_json(base + "/slow", {}, timeout=0.5)

    # The timeout bounds the whole answer, not each read: a byte every 0.2 s would keep a
    # per-read timeout waiting until the server stopped trickling (20 bytes, 4 s).
    assert result.status is None
    assert result.error == "127.0.0.1: timed out"
    assert server.dribbled < 20


def test_https_certificates_are_verified(untrusted_tls_server: str) -> None:
    result = post_json(untrusted_tls_server + SECRET_PATH, {})

    assert result.status is None
    assert result.error == "127.0.0.1: TLS error (CERTIFICATE_VERIFY_FAILED)"


# --- what is refused ---------------------------------------------------------------------


@pytest.fixture
def no_connections(monkeypatch) -> None:
    # Were the check ever broken, no packet may leave for these addresses: fail instead.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]", "[::ffff:127.0.0.1]"])
def test_private_addresses_are_refused_before_any_request(
    receiver: tuple[Receiver, str], settings, no_connections: None, host: str
) -> None:
    server, base = receiver
    settings.ALERTS_ALLOW_PRIVATE_URLS = False
    port = base.rsplit(":", 1)[1]

    with pytest.raises(PrivateAddressError):
        post_json(f"http://{host}:{port}{SECRET_PATH}", {})

    assert server.requests == []


def test_a_webhook_to_a_private_address_is_a_permanent_failure(
    receiver: tuple[Receiver, str], settings
) -> None:
    server, base = receiver
    settings.ALERTS_ALLOW_PRIVATE_URLS = False

    with pytest.raises(TransportError) as failure:
        send(webhook_channel(base), make_notification())

    assert failure.value.permanent
    assert str(failure.value) == "webhook: 127.0.0.1: 127.0.0.1 is not a public address"
    assert server.requests == []


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "file:///etc/passwd", "//example.com/hook"])
def test_only_http_and_https_urls_are_posted_to(url: str) -> None:
    with pytest.raises(UnsafeUrlError):
        post_json(url, {})


# --- secrets -----------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["an echoed error", "a closed port"])
def test_no_secret_reaches_the_logs_or_the_error(
    receiver: tuple[Receiver, str], caplog, failure: str
) -> None:
    server, base = receiver
    server.status, server.answer = 500, f"bad request to {SECRET_PATH}?key=querysecret".encode()
    if failure == "a closed port":
        base = f"http://127.0.0.1:{free_port()}"
    caplog.set_level(logging.DEBUG)

    with pytest.raises(TransportError) as error:
        send(webhook_channel(base), make_notification())

    assert "127.0.0.1" in caplog.text  # the attempt was logged, by host
    for secret in (SECRET_PATH, "s3cr3tT0ken", "querysecret", HMAC_SECRET):
        assert secret not in caplog.text
        assert secret not in str(error.value)
