"""Every answer the integration tests receive is checked against ``contract/``."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from callqueue.producers.client import AssignmentClient
from tests.contract import ContractViolation, check_result
from tests.integration.private_stack import PrivateStack


@pytest.fixture(autouse=True)
def answers_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Check each answer a client (or a private stack's ``call``) receives in this test against its task's schemas.

    A violation raises at once and is also recorded, so the test fails even
    where the raise was caught (a caller thread, a retry loop).
    """
    violations: list[str] = []

    def checked(task: str, result: Any) -> None:
        try:
            check_result(task, result)
        except ContractViolation as exc:
            violations.append(str(exc))
            raise

    client_answer, stack_call = AssignmentClient._answer, PrivateStack.call

    def answer(self: AssignmentClient, task_name: str, result: dict[str, Any]) -> dict[str, Any]:
        checked(task_name, result)
        return client_answer(self, task_name, result)

    def call(self: PrivateStack, client: AssignmentClient, task: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = stack_call(self, client, task, *args, **kwargs)
        checked(task, result)
        return result

    monkeypatch.setattr(AssignmentClient, "_answer", answer)
    monkeypatch.setattr(PrivateStack, "call", call)
    yield violations
    assert not violations, "answers outside contract/:\n" + "\n".join(violations)
