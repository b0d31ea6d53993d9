"""Prediction on new images with a trained run, and self-contained bundles of it.

- bundle.py: a run's recipe (classes, model, img_size, normalisation, TTA, test-time crop, folds) and the
  bundle folder (bundle.json + one safetensors file per fold): the one place that knows its files
- inputs.py: what to predict (image files and folders, or a CSV of ids and image paths)
- predictor.py: ``Predictor`` / ``load_predictor`` (the run's fold models with its TTA), ``predict_table``
  (what `comptk predict` writes) and ``export_run``
"""

from .bundle import Recipe, find_recipe, read_bundle, run_recipe
from .inputs import ImageList, images_from_csv, images_from_paths
from .predictor import (
    Prediction,
    Predictor,
    PredictTable,
    export_run,
    load_predictor,
    predict_table,
)

__all__ = ["ImageList", "PredictTable", "Prediction", "Predictor", "Recipe", "export_run", "find_recipe",
           "images_from_csv", "images_from_paths", "load_predictor", "predict_table", "read_bundle", "run_recipe"]
