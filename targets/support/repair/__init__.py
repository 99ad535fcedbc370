"""Quantization repair: when a quantized TFLite variant fails parity, search for a
recipe that passes, verifying every candidate with the same parity as the variant.

One concern per module:
- recipe.py: the `Recipe` model, its checks, YAML and words (pure Python);
- build.py: a recipe built into a flatbuffer with ai-edge-quantizer;
- damage.py: what int8 damages, measured (weights, activations, inputs), ranked;
- search.py: the search, a `Search` object holding its state, and its typed results;
- report.py: the report record and the console's sentences;
- target.py: the tflite / edgetpu targets' side (float flatbuffer, configured recipes,
  a search on a failed variant with the run's data and parity).
Nothing here imports TensorFlow at module import time.
"""
from __future__ import annotations

from targets.support.repair.build import ENGINE, NothingToQuantize, build_recipe, calibration_samples, engine_version, layer_ops, layers_in_model, ops_regex
from targets.support.repair.damage import (
    INPUTS_DAMAGED, WEIGHTS_DAMAGED, Ranking, blame_from_debugger, blame_from_localization, constant_damage, coverage, input_damage, int8_loss, merge_orders, rank,
)
from targets.support.repair.recipe import BASES, CALIBRATED_BASES, Recipe, check_recipe, describe_float
from targets.support.repair.report import search_record
from targets.support.repair.search import Budget, Candidate, Search, SearchResult, closeness, parity_numbers, search
from targets.support.repair.target import build_recipe_variants, float_flatbuffer, repair_tflite, repair_variant

__all__ = [
    "BASES", "CALIBRATED_BASES", "ENGINE", "INPUTS_DAMAGED", "WEIGHTS_DAMAGED", "Budget", "Candidate", "NothingToQuantize", "Ranking", "Recipe",
    "Search", "SearchResult", "blame_from_debugger", "blame_from_localization", "build_recipe", "build_recipe_variants", "calibration_samples",
    "check_recipe", "closeness", "constant_damage", "coverage", "describe_float", "engine_version", "float_flatbuffer", "input_damage", "int8_loss",
    "layer_ops", "layers_in_model", "merge_orders", "ops_regex", "parity_numbers", "rank", "repair_tflite", "repair_variant", "search", "search_record",
]
