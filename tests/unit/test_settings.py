"""Settings come from the environment, with working defaults and clear errors."""

from __future__ import annotations

import pytest

from callqueue.config import Settings
from callqueue.workers.app import celery_config, create_app
from callqueue.workers.exceptions import ConfigurationError
from callqueue.workers.transport import SENTINEL_TRANSPORT, TRANSPORT


def test_defaults_work_without_any_environment() -> None:
    settings = Settings.from_env({})
    assert settings.mongo_db == "callqueue"
    assert settings.broker_url.startswith("redis://")


def test_well_known_variables_and_prefixed_ones_are_read() -> None:
    settings = Settings.from_env({
        "MONGO_URL": "mongodb://db:27017/", "MONGO_DB": "calls", "CELERY_BROKER_URL": "redis://r:6379/0",
        "CELERY_RESULT_BACKEND": "redis://r:6379/1", "CALLQUEUE_CLIENT_TIMEOUT_SECONDS": "2.5",
    })
    assert (settings.mongo_url, settings.mongo_db, settings.client_timeout_seconds) == \
        ("mongodb://db:27017/", "calls", 2.5)


@pytest.mark.parametrize(("name", "value"), [
    ("CALLQUEUE_MAX_ID_LENGTH", "many"), ("MONGO_URL", "postgres://x"),
    ("CELERY_BROKER_URL", "amqp://x"), ("CALLQUEUE_LOG_FORMAT", "xml"),
])
def test_malformed_values_name_the_variable_to_fix(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_the_app_accepts_json_only_and_routes_imports_to_batch() -> None:
    app = create_app(Settings(), include_tasks=False)
    assert app.conf.accept_content == ["json"] and app.conf.result_accept_content == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.amqp.router.route({}, "callqueue.import_students")["queue"].name == "batch"
    assert app.amqp.router.route({}, "callqueue.assign_next_student")["queue"].name == "assignments"


SENTINEL_BROKER = "sentinel://s1:26379/0;sentinel://s2:26379/0;sentinel://s3:26379/0"
SENTINEL_BACKEND = "sentinel://s1:26379/1;sentinel://s2:26379/1;sentinel://s3:26379/1"


def test_sentinel_urls_are_accepted_with_the_master_name_beside_them() -> None:
    settings = Settings.from_env({"CELERY_BROKER_URL": SENTINEL_BROKER, "CELERY_RESULT_BACKEND": SENTINEL_BACKEND,
                                  "CALLQUEUE_REDIS_SENTINEL_MASTER": "calls"})
    assert (settings.broker_url, settings.redis_sentinel_master) == (SENTINEL_BROKER, "calls")
    assert Settings.from_env({"CELERY_BROKER_URL": SENTINEL_BROKER}).redis_sentinel_master == "callqueue"


@pytest.mark.parametrize("url", [
    "sentinel://s1:26379/0;sentinel://s2:26379/1",  # kombu and Celery would use the first address's database
    "sentinel://s1:26379;sentinel://s2:26379/1",
    "sentinel://s1:port/0", "sentinel://s1:26379/zero", "sentinel://s1:26379/0;redis://r:6379/0",
])
def test_malformed_sentinel_urls_name_the_variable_to_fix(url: str) -> None:
    with pytest.raises(ConfigurationError, match="CELERY_RESULT_BACKEND"):
        Settings.from_env({"CELERY_RESULT_BACKEND": url})


def test_a_sentinel_url_error_never_shows_the_password() -> None:
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({"CELERY_BROKER_URL": "sentinel://:s3cret@s1:26379/0;sentinel://:s3cret@s2:26379/2"})
    assert "s3cret" not in str(error.value)


def test_a_sentinel_url_needs_a_master_name() -> None:
    with pytest.raises(ConfigurationError, match="CALLQUEUE_REDIS_SENTINEL_MASTER"):
        Settings(broker_url=SENTINEL_BROKER, redis_sentinel_master=" ").check()


def test_celery_gets_our_sentinel_transport_and_the_master_name_only_for_sentinel_urls() -> None:
    plain = celery_config(Settings())
    assert plain["broker_transport"] == TRANSPORT
    assert "master_name" not in plain["broker_transport_options"]
    assert "master_name" not in plain["result_backend_transport_options"]
    sentinel = celery_config(Settings.from_env({"CELERY_BROKER_URL": SENTINEL_BROKER,
                                                "CELERY_RESULT_BACKEND": SENTINEL_BACKEND,
                                                "CALLQUEUE_REDIS_SENTINEL_MASTER": "calls"}))
    assert sentinel["broker_transport"] == SENTINEL_TRANSPORT
    assert sentinel["broker_transport_options"]["master_name"] == "calls"
    assert sentinel["result_backend_transport_options"]["master_name"] == "calls"
    assert sentinel["result_backend_transport_options"]["retry_policy"] == plain["result_backend_transport_options"][
        "retry_policy"]
