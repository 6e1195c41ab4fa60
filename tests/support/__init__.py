"""Helpers the tests share: Redis processes, servers, adapters, cookies, subprocesses.

Test modules import from here and never from each other.
"""
