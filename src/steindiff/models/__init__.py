"""Learned networks and checkpoint loaders (the project's own, diffusers, EDM).

Import the submodules directly (``steindiff.models.unet``, ``steindiff.models.diffusers_loader``, ...):
optional dependencies such as diffusers are imported only by the loader that needs them.
"""
