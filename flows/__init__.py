"""Prefect flows wiring the pipeline stages to the store.

Importing this package first points Prefect at a private home and turns analytics off, so a
researcher's laptop needs no server, no setup and sends nothing anywhere.
"""

from flows.runtime import configure_prefect

configure_prefect()
