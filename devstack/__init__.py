"""The embedded stack: real mongod, redis-server, Celery workers and Flower on loopback ports.

Used by ``make demo``, the test suite and the benchmark. Every process it
starts is stopped again by PID, also on failure and Ctrl-C.
"""
