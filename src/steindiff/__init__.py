"""steindiff: few-step diffusion sampling with SteinDiff correction.

The pure-PyTorch core lives in ``steindiff.core``; everything else builds on it.
"""

__version__ = "0.1.0"
