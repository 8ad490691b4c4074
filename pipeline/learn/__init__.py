"""Learn from coders: the decision log folded into the codebook (``codebook``), a run that honours the
decisions (``honour``), and what the decisions make of segments: the next run's inputs and coding with the
confirmed codebook (``apply``)."""
