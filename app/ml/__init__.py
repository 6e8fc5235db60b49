"""Torch lives here and only here: networks, training, prediction, checkpoints, embedders.

Submodules are imported explicitly (``from app.ml.train import fit_self_training``); this package
imports nothing itself, so ``import app.ml`` does not load torch. ``app.ml.artifacts`` (for
``load_array`` / ``atomic_save_npy``) and ``app.ml.embedders`` (for the pixel and vector
embedders) also keep torch out of their import, so the request path can use them.
"""
