"""The callqueue benchmark (``make bench``, ``python -m bench --list``): a map.

``bench/harness/`` is what every part shares:

- ``core``: ``RunOptions`` (the command line), the ``Part`` base, the
  ``Harness`` a part runs on (the run's own mongod and redis-server, a
  ``devstack`` stack started on first use; Celery workers per part; a
  MongoDB client; desk pools; the results of the parts before) and
  ``run_parts``; ``desks``: clients that start each measurement together;
  ``cpu``: CPU time per operation from ``/proc``;
- ``claims``: the students every part seeds, the seed-style baseline, and
  claims without Celery; ``callers``: callers through Celery, closed-loop
  and open-loop (Poisson presses); ``presses``: one press three ways (the
  no-op pair, two trips, one trip with ``complete_and_next``);
  ``capacity``: a press's saturated capacity and what stock callers leave
  in the result backend;
- ``integrity``: never handed to two assistants (``devstack.audit`` plus
  what the clients were told); ``targets``: figures (percentiles, medians,
  ratios) and the PASS/FAIL they earn; ``report``: printout, JSON, chart.

``bench/parts/`` holds one module per part, registered in
``bench/parts/__init__.py``. ``bench/tasks.py`` has the benchmark's own
tasks, loaded by its workers with ``--include bench.tasks``; this package is
kept free of heavy imports for them. Results: ``bench/results/``; figures
and how to read them: ``docs/performance.md``.
"""
