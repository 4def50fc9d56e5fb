"""Sender and broker-security settings: a bad combination fails at start-up with the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream.settings import load_settings

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("smtp without host", {"sender_transport": "smtp"}, "NURTURE_SENDER_SMTP_HOST"),
    (
        "webhook without url",
        {"sender_transport": "webhook"},
        "NURTURE_SENDER_WEBHOOK_URL=http(s)://",
    ),
    ("recipient without lead", {"sender_recipient": "x@y"}, "must contain {lead_id}"),
    (
        "smtp user without password",
        {"sender_smtp_username": "u"},
        "set both NURTURE_SENDER_SMTP_USERNAME and NURTURE_SENDER_SMTP_PASSWORD",
    ),
    (
        "sasl without credentials",
        {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN"},
        "SASL_SSL needs kafka_sasl_password: set NURTURE_KAFKA_SASL_PASSWORD",
    ),
    (
        "sasl without mechanism",
        {
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_username": "u",
            "kafka_sasl_password": "p",
        },
        "set NURTURE_KAFKA_SASL_MECHANISM",
    ),
    (
        "credentials on plaintext",
        {"kafka_sasl_username": "u", "kafka_sasl_password": "p"},
        "set it to SASL_SSL (or SASL_PLAINTEXT)",
    ),
    (
        "ca file on plaintext",
        {"kafka_ssl_cafile": "__FILE__"},
        "set it to SSL or SASL_SSL, or unset the files",
    ),
    (
        "cert without key",
        {"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "__FILE__"},
        "set both NURTURE_KAFKA_SSL_CERTFILE and NURTURE_KAFKA_SSL_KEYFILE",
    ),
    (
        "missing ca file",
        {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nonexistent/ca.pem"},
        "kafka_ssl_cafile: /nonexistent/ca.pem is not a readable file",
    ),
    ("unknown mechanism", {"kafka_sasl_mechanism": "MD5"}, "kafka_sasl_mechanism"),
    ("unknown protocol", {"kafka_security_protocol": "TLS"}, "NURTURE_KAFKA_SECURITY_PROTOCOL"),
]


@pytest.mark.parametrize(("case", "fields", "fix"), BAD, ids=[b[0] for b in BAD])
def test_bad_combination_names_the_fix(
    case: str, fields: dict[str, Any], fix: str, tmp_path: Path
) -> None:
    some_file = tmp_path / "f.pem"
    some_file.write_text("x")
    fields = {k: str(some_file) if v == "__FILE__" else v for k, v in fields.items()}
    with pytest.raises(SystemExit) as info:
        load_settings(**fields)
    assert fix in str(info.value), str(info.value)


def test_good_combinations_build_client_options(tmp_path: Path) -> None:
    plain = load_settings()
    assert plain.kafka_auth() == {"security_protocol": "PLAINTEXT"}
    assert plain.faust_credentials() is None
    sasl = load_settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    auth = sasl.kafka_auth()
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512" and auth["sasl_plain_password"] == "p"
    assert "ssl_context" not in auth
    credentials = sasl.faust_credentials()
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    tls = load_settings(
        kafka_security_protocol="SASL_SSL",
        **{"kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "u", "kafka_sasl_password": "p"},
    )
    assert tls.kafka_auth()["ssl_context"] is not None
    assert tls.faust_credentials().protocol.value == "SASL_SSL"
