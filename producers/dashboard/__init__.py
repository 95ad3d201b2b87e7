"""The supervisor dashboard: ``python -m producers dashboard``.

A live view of the call sessions in the browser (``app``), fed by one shared
poll of MongoDB per process (``live``), behind a login with an admin and a
read-only role (``auth``). docs/dashboard.md says how to run it.
"""
