"""The callqueue benchmark (``make bench``).

Starts its own mongod, redis-server and Celery workers, measures the claim
engine, its cost against session size and the Celery round trip in one run,
checks that no student was handed out twice, and writes JSON and a PNG chart
to ``bench/results/``. Kept free of heavy imports: workers import
``bench.tasks`` through this package.
"""
