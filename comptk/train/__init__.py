"""Training: K-fold cross-validation of one model recipe, in the order data flows.

- crossval.py: ``run_cv``, the fold loop: resolve, check, fit each fold, predict OOF + test, write the run
- preflight.py: every check that must pass before a run writes anything
- recipe.py: settings fitted to the images and the device ("auto", declarations without [train])
- engine.py: one fold's epoch loop (``fit``) and ``predict_proba``; devices and precision
- dataset.py: the in-memory image dataset batches are drawn from
- models.py: timm models (and comptk's small CNNs), local weights, factorised heads
- weights.py: pretrained weights from the local caches, failing fast when offline
- augment.py: augment presets (batch-level and albumentations) and declared pipelines
- losses.py, mixing.py, sampling.py: losses, mixup/CutMix, class-balanced sampling
- tta.py: TTA presets, validation crops and what test-time crops mean for a run
- pseudo.py: pseudo-labels from a finished run's confident test predictions
"""
