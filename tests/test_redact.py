from support.core.redact import redact


def test_passwords_in_urls_and_dsns_are_masked():
    text = "DATABASE_URL=postgresql+psycopg2://app:s3cr3t@127.0.0.1:5432/users host=x password=hunter2 user=y"
    out = redact(text)
    assert "s3cr3t" not in out and "hunter2" not in out
    assert "postgresql+psycopg2://app:***@127.0.0.1:5432/users" in out


def test_named_secrets_are_masked_anywhere():
    assert redact("token abc123 in a log line", ("abc123",)) == "token *** in a log line"
