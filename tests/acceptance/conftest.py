"""Fixtures shared by the acceptance tests."""

from __future__ import annotations

import pytest

from tests.acceptance.compose_files import example_env_values
from tests.acceptance.test_compose import compose_tool


@pytest.fixture(scope="session")
def compose_cli() -> list[str]:
    """The docker-compose command line (``docker-compose`` or ``docker compose``); skip when neither exists."""
    tool = compose_tool()
    if tool is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed "
                    "(Debian: apt-get install docker-compose)")
    return tool


@pytest.fixture(scope="session")
def example_env() -> dict[str, str]:
    """The variables .env.example sets."""
    return example_env_values()
