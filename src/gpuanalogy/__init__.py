"""gpuanalogy: visual attribute transfer through Deep Image Analogy (Liao et al., SIGGRAPH 2017)."""
__version__ = "0.1.0"
