"""Learn from coders: the decision log folded into the codebook (``codebook``) and a run that honours
the decisions (``honour``)."""
