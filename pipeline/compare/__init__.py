"""Compare codings: agreement figures (``agreement``), the machine against the coders (``compare``), the
comparison as an HTML report and tables (``report``), and the Framework matrix (``matrix``)."""
