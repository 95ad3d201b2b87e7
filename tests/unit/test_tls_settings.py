"""TLS is configured through the URLs alone, and URLs that would not check the server are refused at startup."""

from __future__ import annotations

import ssl

import pytest

from callqueue.config import Settings
from callqueue.workers.app import celery_config, create_app
from callqueue.workers.exceptions import ConfigurationError
from callqueue.workers.transport import TLS_TRANSPORT, RedisTransport

CA = "/etc/callqueue/tls/ca.pem"
BROKER = f"rediss://:pw@redis.internal:6380/0?ssl_cert_reqs=required&ssl_ca_certs={CA}"
BACKEND = f"rediss://:pw@redis.internal:6380/1?ssl_cert_reqs=required&ssl_ca_certs={CA}"
MONGO = f"mongodb://mongo.internal:27017/?tls=true&tlsCAFile={CA}"


def tls_settings() -> Settings:
    return Settings.from_env({"MONGO_URL": MONGO, "CELERY_BROKER_URL": BROKER, "CELERY_RESULT_BACKEND": BACKEND})


def test_tls_urls_are_accepted_and_kept_as_given() -> None:
    settings = tls_settings()
    assert (settings.mongo_url, settings.broker_url, settings.result_backend) == (MONGO, BROKER, BACKEND)


def test_the_broker_connection_checks_the_server_against_the_ca_of_the_url() -> None:
    app = create_app(tls_settings(), include_tasks=False)
    try:
        expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": CA}
        assert app.conf.broker_use_ssl == expected
        assert app.connection().ssl == expected
    finally:
        app.close()


def test_plain_urls_get_no_tls_setting() -> None:
    assert "broker_use_ssl" not in celery_config(Settings())


def test_a_tls_broker_runs_on_our_transport_and_is_written_as_rediss_without_the_password() -> None:
    """Logs show the URL kombu writes; Flower picks the client of its broker view (queue lengths) by its scheme."""
    app = create_app(tls_settings(), include_tasks=False)
    plain = create_app(Settings(), include_tasks=False)
    try:
        assert app.conf.broker_transport == TLS_TRANSPORT
        assert isinstance(app.connection().transport, RedisTransport)
        assert app.connection().as_uri() == "rediss://:**@redis.internal:6380/0"
        assert plain.connection().as_uri() == "redis://:**@127.0.0.1:6379/0"
    finally:
        app.close()
        plain.close()


@pytest.mark.parametrize(("url", "message"), [
    ("rediss://redis.internal:6380/1", "needs ssl_cert_reqs=required"),  # Celery's backend would refuse it late
    ("rediss://redis.internal:6380/1?ssl_cert_reqs=sometimes", "ssl_cert_reqs must be one of"),
    (f"redis://redis.internal:6380/1?ssl_ca_certs={CA}", "need a rediss:// URL"),
])
def test_tls_urls_that_would_not_check_the_server_name_the_variable_to_fix(url: str, message: str) -> None:
    for variable in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        with pytest.raises(ConfigurationError, match=f"{variable}: .*{message}"):
            Settings.from_env({variable: url})


def test_a_tls_url_error_never_shows_the_password() -> None:
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({"CELERY_BROKER_URL": "rediss://:s3cret@redis.internal:6380/0"})
    assert "s3cret" not in str(error.value)
