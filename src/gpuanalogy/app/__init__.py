"""The command line: ``gpuanalogy run``, ``batch`` and ``demo``, and what only they need.

The library (everything in ``gpuanalogy`` outside this package) never imports from here.
``main`` parses; each command is a thin module that ends in one library call; the table of
options, the pair sources, the resume protocol and the progress display are modules of their own
(docs/architecture.md).
"""
