"""Training: K-fold cross-validation of one model recipe, in the order data flows.

- crossval.py: ``run_cv``, the fold loop: resolve, check, fit each fold, predict OOF + test, write the run
- engine.py: one fold's epoch loop (``fit``) and ``predict_proba``; devices and precision
- dataset.py: the in-memory image dataset batches are drawn from
- models.py: timm models (and comptk's small CNNs), local weights, factorised heads
- augment.py: augment presets (batch-level and albumentations) and declared pipelines
- losses.py, mixing.py, sampling.py: losses, mixup/CutMix, class-balanced sampling
- tta.py: TTA presets, validation crops and what test-time crops mean for a run
- pseudo.py: pseudo-labels from a finished run's confident test predictions
"""
