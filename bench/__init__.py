"""Benchmarks: Themesift against human codes and against BERTopic, speed and memory.

Run as ``python -m bench ...`` (see ``python -m bench --help`` and docs/benchmarks.md). Results are
written as JSON to ``docs/bench/`` and summarised in ``docs/benchmarks.md``, each with the exact
command, the machine, package versions and the date.
"""
