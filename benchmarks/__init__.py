"""Side-by-side benchmark of pymysqlpool against raw PyMySQL and other pools.

Entry point: :func:`benchmarks.run.main` (also ``python benchmarks/run.py``).
"""
