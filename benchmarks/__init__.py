"""Benchmark runner comparing asyncq with hand-written asyncio code and peer libraries.

Run it from the repository root with ``python -m benchmarks``; see ``benchmarks/README.md``.
Every measurement runs in a fresh child process (``benchmarks.child``) so that one system's
allocations, caches and garbage never leak into another system's numbers.
"""
