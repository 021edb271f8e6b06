"""The learning stack: what is optimised and how (docs/theory.md, O1-O4 and the CMCD stages).

* ``objectives``   InfoNCE, CMC, CMD and L2 alignment losses (O1-O4)
* ``models``       encoders as plain pytrees
* ``probe``        the linear (logistic-regression) probe of the downstream stage
* ``training``     the three CMCD stages as ``lax.scan`` loops
* ``divergences``  estimated distances: Monte Carlo TV, classifier TV lower bounds, feature TV
* ``discomkd``     the DisCoM-KD comparator
* ``pipeline``     one CMCD run (and its baselines) from a world, sizes and a key
* ``compile_cache`` JAX's persistent compilation cache, as every entry point turns it on
"""
