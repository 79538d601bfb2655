"""Benchmark runners: each prints flat JSON rows and a table; never part of the test suite."""
