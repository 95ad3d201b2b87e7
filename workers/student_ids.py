"""How a student is named: the id its import gave it, and the id it is handed out as.

A row imported into session ``eve-1`` with ``student_id`` ``s2`` is stored,
and handed out, as ``eve-1:s2``: the session id (``\\`` and ``:`` escaped),
``:``, then the import's id (a digest of the row when it had none). That
keeps ids unique across sessions in one collection. People keep using the
id they imported, so every task that names a student within a session
accepts either form.

Resolution order, for an id ``X`` sent with session ``S``:

1. if ``X`` begins with ``S``'s escaped id and ``:``, it is first read as the
   id handed out (exactly the ``student_id`` of an answer);
2. then ``X`` is read as the import's id: the student ``<escaped S>:X``.

The first form that names a student of the session is the student. Both
forms name a student only when an import's own id begins with its session's
id and ``:`` (say ``eve-1:s2`` imported into ``eve-1``, stored as
``eve-1:eve-1:s2``); ``eve-1:s2`` then names the student imported as
``s2``, and the other is reached by the id it was handed out as.
"""

from __future__ import annotations

SEPARATOR = ":"


def session_prefix(session_id: str) -> str:
    """The start of every student ``_id`` of the session: ``\\`` and ``:`` escaped, so "a" + "b:c" never
    equals "a:b" + "c"."""
    return session_id.replace("\\", "\\\\").replace(SEPARATOR, "\\" + SEPARATOR) + SEPARATOR


def handed_out_id(session_id: str, import_id: str) -> str:
    """The ``_id`` (and answer ``student_id``) of the student imported as ``import_id``."""
    return session_prefix(session_id) + import_id


def import_id_of(session_id: str, student_id: str) -> str:
    """The import's id of a stored student: its ``_id`` without the session's prefix."""
    prefix = session_prefix(session_id)
    return student_id[len(prefix):] if student_id.startswith(prefix) else student_id


def id_forms(session_id: str, given: str) -> tuple[str, ...]:
    """The ``_id`` values ``given`` may name in the session, in resolution order (see module doc)."""
    as_import = handed_out_id(session_id, given)
    return (given, as_import) if given.startswith(session_prefix(session_id)) else (as_import,)


def forms_tried(session_id: str, given: str) -> str:
    """The stored ids tried for ``given``, as words for a rejection: "tried as the import's id, stored as
    'eve-1:s9'", or "tried as the id handed out ('eve-1:s9') and as the import's id ('eve-1:eve-1:s9')"."""
    forms = id_forms(session_id, given)
    if len(forms) == 1:
        return f"tried as the import's id, stored as {forms[0]!r}"
    return f"tried as the id handed out ({forms[0]!r}) and as the import's id ({forms[1]!r})"
