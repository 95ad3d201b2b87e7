"""The shape of a task message, checked before Celery reads it.

Celery's worker trusts a message's envelope: a body sent without a content
type (or as ``application/text``) reaches it undecoded, and a JSON body that
is not ``[args, kwargs, embed]`` is unpacked in the worker's main process.
Either would raise there, stop the worker, and stay queued for the next
worker to stop on. ``json_only_strategy`` refuses such a message as an
invalid task message instead: Celery logs it and drops it, nothing runs and
the worker keeps serving.

Non-JSON content types that kombu decodes (pickle, YAML) are left to kombu,
which refuses them unread because only JSON is accepted.
"""

from __future__ import annotations

from typing import Any, Callable

from celery.exceptions import InvalidTaskError
from celery.worker.strategy import default as default_strategy
from kombu.message import Message
from kombu.serialization import TRUSTED_CONTENT

JSON = "application/json"


def json_only_strategy(task: Any, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Celery's own strategy for ``task``, behind a check of each message's envelope."""
    handle = default_strategy(task, app, consumer, **options)

    def task_message_handler(message: Message, body: Any, *args: Any, **kwargs: Any) -> Any:
        problem = envelope_problem(message, body)
        if problem:
            raise InvalidTaskError(f"{problem}; send JSON [args, kwargs, embed] as {JSON}")
        return handle(message, body, *args, **kwargs)

    return task_message_handler


def envelope_problem(message: Message, body: Any) -> str | None:
    """Why this message cannot be read as a JSON task message, or None.

    ``body`` is None for protocol 2 (the task is named in the headers); for
    protocol 1 it is the decoded body, which names the task itself.
    """
    content_type = message.content_type
    if content_type != JSON:
        if not content_type or content_type in TRUSTED_CONTENT:
            return f"content type {content_type or 'missing'}, not {JSON}"
        return None  # kombu refuses it unread: it is not in accept_content
    if body is None:
        return _protocol2_problem(message.payload)
    return _arguments_problem(body.get("args", []), body.get("kwargs", {})) if isinstance(body, dict) \
        else "protocol 1 body is not an object"


def _protocol2_problem(payload: Any) -> str | None:
    if not isinstance(payload, list) or len(payload) != 3:
        return "body is not a list of three: [args, kwargs, embed]"
    args, kwargs, embed = payload
    if embed is not None and not isinstance(embed, dict):
        return "embed (the body's third item) is not an object"
    return _arguments_problem(args, kwargs)


def _arguments_problem(args: Any, kwargs: Any) -> str | None:
    if not isinstance(args, list):
        return "args is not a list"
    if not isinstance(kwargs, dict):
        return "kwargs is not an object"
    return None
