"""Ingest: files in, plain text with speaker turns (``read``), cut into short segments (``segment``)."""
