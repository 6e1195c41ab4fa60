"""ticketd benchmarks: ``make bench`` (``python -m bench``).

Everything runs in one process tree on this machine, against a redis-server the
harness starts on a free loopback port. Results are printed as ratios against
baselines measured in the same run, because absolute numbers on shared machines
mean little; the raw figures go to ``bench/results/<time>.json``.
"""
