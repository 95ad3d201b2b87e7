"""A caller of the tasks names its broker: no silent fall-back to whatever Redis listens on 127.0.0.1:6379."""

from __future__ import annotations

import pytest

from callqueue.config import load_caller_settings
from callqueue.workers.exceptions import ConfigurationError


def test_a_caller_without_broker_urls_is_told_what_to_set() -> None:
    with pytest.raises(ConfigurationError, match="^CELERY_BROKER_URL and CELERY_RESULT_BACKEND are not set: .* "
                                                 r"`make demo DEMO_ARGS=--hold` prints the export lines"):
        load_caller_settings({"MONGO_URL": "mongodb://db:27017/"})
    with pytest.raises(ConfigurationError, match="^CELERY_RESULT_BACKEND is not set"):
        load_caller_settings({"CELERY_BROKER_URL": "redis://queue:6379/0"})
    settings = load_caller_settings({"CELERY_BROKER_URL": "redis://queue:6379/0",
                                     "CELERY_RESULT_BACKEND": "redis://queue:6379/1"})
    assert (settings.broker_url, settings.result_backend) == ("redis://queue:6379/0", "redis://queue:6379/1")
