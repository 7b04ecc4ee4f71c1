"""The command line: ``gpuanalogy run``, ``batch``, ``video`` and ``demo``, and what only they need.

The library (everything in ``gpuanalogy`` outside this package) never imports from here.
``main`` parses; each command is a thin module that ends in one library call; the table of
options, the per-pair steps every command shares (``pair``), the pair sources, the resume
protocol, the progress display and a clip's frames are modules of their own
(docs/architecture.md).
"""
