"""Files other tools read and write: REFI-QDA projects and codebooks (``refi_qda``), a study as a
REFI-QDA project (``qda_export``) and coded files read in (``codings``)."""
