"""Pictures of models and embeddings: attention maps, 2-D maps, one-page reports.

Submodules are imported on use (``dinokit.viz.attention``...), so importing this package
stays cheap.
"""
