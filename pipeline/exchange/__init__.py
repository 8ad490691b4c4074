"""Files other tools read and write: REFI-QDA projects and codebooks (``refi_qda``), a study as a REFI-QDA
project (``qda_export``), coded files read in (``codings``), the decision log as CSV (``decision_log``), the
confirmed codebook (``codebook_export``) and a run's suggestions as CSV or JSON (``suggestions_export``)."""
