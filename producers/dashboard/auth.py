"""Who may look at the dashboard, and who may act: logins from the environment, roles, CSRF tokens.

Logins come from two variables, like Flower's ``FLOWER_BASIC_AUTH``:
``CALLQUEUE_DASHBOARD_ADMIN_AUTH`` (may also act: close, reopen, release)
and ``CALLQUEUE_DASHBOARD_VIEWER_AUTH`` (sees everything, changes nothing),
each ``user:password`` or several separated by commas. They are read by the
dashboard alone, never part of the settings the workers get.

A login is kept in a signed session cookie (``HttpOnly``, ``SameSite=Strict``)
holding the user's name and a random CSRF token; every form carries that token
and every POST must return it. The cookie's signing key is made at start, so
a restart ends every login.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Mapping

from starlette.requests import Request

from callqueue.workers.exceptions import ConfigurationError

ADMIN = "admin"
VIEWER = "viewer"
ROLE_VARIABLES = {ADMIN: "CALLQUEUE_DASHBOARD_ADMIN_AUTH", VIEWER: "CALLQUEUE_DASHBOARD_VIEWER_AUTH"}
# The one user of a dashboard started without logins (loopback only): the person at this machine.
LOCAL_USER = "local"


@dataclass(frozen=True)
class User:
    """A logged-in person and what they may do."""

    name: str
    role: str

    @property
    def may_act(self) -> bool:
        return self.role == ADMIN


class Logins:
    """The users allowed in, each with a password and a role (or nobody: open access on loopback)."""

    def __init__(self, passwords: Mapping[str, tuple[str, str]], open_access: bool = False) -> None:
        self._passwords = dict(passwords)
        self.open_access = open_access

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Logins":
        """Read both variables; ``ConfigurationError`` for a malformed entry or a user named twice."""
        passwords: dict[str, tuple[str, str]] = {}
        for role, variable in ROLE_VARIABLES.items():
            for entry in filter(None, (part.strip() for part in environ.get(variable, "").split(","))):
                name, colon, password = entry.partition(":")
                if not (colon and name.strip() and password):
                    raise ConfigurationError(f"{variable}: each login must be user:password (separated by commas)")
                if name in passwords:
                    raise ConfigurationError(f"{variable}: user {name!r} is given more than once")
                passwords[name] = (password, role)
        return cls(passwords)

    @classmethod
    def nobody(cls) -> "Logins":
        """No logins: everyone who can reach the (loopback) address is the local admin."""
        return cls({}, open_access=True)

    def __bool__(self) -> bool:
        return bool(self._passwords) or self.open_access

    def check(self, name: str, password: str) -> User | None:
        """The user whose name and password these are, or None; compares in constant time."""
        found: User | None = None
        for known, (expected, role) in self._passwords.items():
            if hmac.compare_digest(known.encode(), name.encode()) & hmac.compare_digest(expected.encode(),
                                                                                       password.encode()):
                found = User(known, role)
        return found

    def current(self, request: Request) -> User | None:
        """The logged-in user of this request (from the session cookie), or None."""
        if self.open_access:
            return User(LOCAL_USER, ADMIN)
        name = request.session.get("user")
        entry = self._passwords.get(name) if isinstance(name, str) else None
        return None if entry is None else User(name, entry[1])


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, submitted: object) -> bool:
    """The form returned the session's token."""
    expected = request.session.get("csrf")
    return isinstance(expected, str) and isinstance(submitted, str) and hmac.compare_digest(expected, submitted)
