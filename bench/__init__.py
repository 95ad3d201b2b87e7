"""The callqueue benchmark (``make bench``, ``python -m bench --list``): a map.

``bench/harness/`` is what every part shares:

- ``core``: ``RunOptions`` (the command line), the ``Part`` base, the
  ``Harness`` a part runs on (the servers, started on first use, a MongoDB
  client, desk pools, the results of the parts before) and ``run_parts``;
- ``servers``: mongod, redis-server and per-part Celery workers (a
  ``devstack`` stack, stopped by PID); ``desks``: clients that start each
  measurement together; ``cpu``: CPU time per operation from ``/proc``;
- ``data``: the students every part seeds, and the seed-style baseline;
- ``claims``: claims without Celery; ``calls``: closed-loop callers through
  Celery; ``arrivals``: open-loop Poisson presses;
- ``integrity``: never handed to two assistants (``devstack.audit`` plus
  what the clients were told); ``stats`` and ``targets``: figures and the
  PASS/FAIL they earn; ``report``: the printout, JSON and chart.

``bench/parts/`` holds one module per part, registered in
``bench/parts/__init__.py``. ``bench/tasks.py`` has the benchmark's own
tasks, loaded by its workers with ``--include bench.tasks``; this package is
kept free of heavy imports for them. Results: ``bench/results/``; figures
and how to read them: ``docs/performance.md``.
"""
