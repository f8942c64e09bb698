"""The fine-tuning experiment of ``finetune_experiment.py``, in parts.

``settings`` (what a run is given), ``runs`` (``dinokit train`` in a subprocess, its kNN curve,
``dinokit evaluate``), ``guide`` (the guide's lightly loop), ``supervised`` (the strong-features
stand-in), ``stages`` (one function per stage), ``results`` (what the stages measured, kept in
``results.json``), ``report`` (``results.md``) and ``plot`` (``curves.png``).
"""
