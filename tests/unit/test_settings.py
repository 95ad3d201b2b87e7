"""Settings come from the environment, with working defaults and clear errors."""

from __future__ import annotations

import pytest

from config import Settings
from workers.app import create_app
from workers.exceptions import ConfigurationError


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
