"""The recipe model: what a repair search finds and what a target's `recipes:` list
reproduces, in pure Python (the config loader checks recipes before TensorFlow loads).

A `Recipe` is a base scheme (`int8`, `int16x8` or `dynamic_range`), the layers kept in
float, those of them whose weights stay float too, the layers given 16-bit activations,
whether the model's inputs stay float, and how many calibration samples to use.

Follows STYLE.md pattern 5 (config is frozen dataclasses, enum values are the YAML
strings, every problem collected with its key) and pattern 14 (one typed shape with its
JSON encoding).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal


BASES = ("int8", "int16x8", "dynamic_range")
CALIBRATED_BASES = ("int8", "int16x8")


@dataclass(frozen=True)
class Recipe:
    """One quantization recipe, published as its own variant (`name`)."""

    name: str  # the variant it is published as, e.g. int8_repaired
    base: Literal["int8", "int16x8", "dynamic_range"] = "int8"
    float_layers: tuple[str, ...] = ()  # layers computed in float (their weights stay int8 where they have any)
    float_weights: tuple[str, ...] = ()  # of those, layers whose weights stay float too
    int16_layers: tuple[str, ...] = ()  # layers with 16-bit activations (int8 base only)
    float_inputs: bool = False  # model inputs stay float (quantized inside the model)
    calibration_samples: int = 0  # 0: the target's `calibration_samples`

    def describe(self) -> str:
        parts = [self.base]
        if self.float_layers:
            parts.append(f"float: {', '.join(self.float_layers)}")
        if self.float_weights:
            parts.append(f"float weights: {', '.join(self.float_weights)}")
        if self.int16_layers:
            parts.append(f"int16 activations: {', '.join(self.int16_layers)}")
        if self.float_inputs:
            parts.append("float inputs")
        if self.calibration_samples:
            parts.append(f"calibrated on {self.calibration_samples} samples")
        return "; ".join(parts)

    def as_yaml(self, indent: str = "      ") -> str:
        """The `recipes:` list item that reproduces this recipe."""

        def items(values):
            return "[" + ", ".join(_yaml_str(v) for v in values) + "]"

        lines = [f"- name: {self.name}", f"  base: {self.base}"]
        if self.float_layers:
            lines.append(f"  float_layers: {items(self.float_layers)}")
        if self.float_weights:
            lines.append(f"  float_weights: {items(self.float_weights)}")
        if self.int16_layers:
            lines.append(f"  int16_layers: {items(self.int16_layers)}")
        if self.float_inputs:
            lines.append("  float_inputs: true")
        if self.calibration_samples:
            lines.append(f"  calibration_samples: {self.calibration_samples}")
        return "\n".join(indent + line for line in lines)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "base": self.base,
            "float_layers": list(self.float_layers),
            "float_weights": list(self.float_weights),
            "int16_layers": list(self.int16_layers),
            "float_inputs": self.float_inputs,
            "calibration_samples": self.calibration_samples,
        }


def _yaml_str(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z_][\w.\-/]*", value) else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_recipe(recipe: Recipe, variants: Iterable[str], data_samples: int | None) -> list[tuple[str, str]]:
    """Problems with one `recipes:` item, as (key, message), in pure Python."""
    problems = []
    if not re.fullmatch(r"[A-Za-z][\w\-]*", recipe.name):
        problems.append(("name", f"'{recipe.name}' is not a usable variant name (letters, digits, '_' and '-')"))
    if recipe.name in tuple(variants) or recipe.name in ("float32", "float16") + BASES:
        problems.append(("name", f"'{recipe.name}' is already a variant name; name the recipe e.g. '{recipe.base}_repaired'"))
    if recipe.int16_layers and recipe.base != "int8":
        problems.append(("int16_layers", f"16-bit activations for chosen layers apply to the int8 base, not {recipe.base}"))
    stray = [x for x in recipe.float_weights if x not in recipe.float_layers]
    if stray:
        problems.append(("float_weights", f"layer(s) {', '.join(stray)} must be in float_layers too (float weights, float activations)"))
    overlap = sorted(set(recipe.float_layers) & set(recipe.int16_layers))
    if overlap:
        problems.append(("int16_layers", f"layer(s) {', '.join(overlap)} are listed in float_layers too"))
    if recipe.calibration_samples < 0:
        problems.append(("calibration_samples", "expected a positive number of samples (or 0 for the target's)"))
    if recipe.calibration_samples and recipe.base == "dynamic_range":
        problems.append(("calibration_samples", "dynamic_range is not calibrated; remove this key"))
    if data_samples is not None and recipe.calibration_samples > data_samples:
        problems.append(("calibration_samples", f"{recipe.calibration_samples} samples but `data.samples` is {data_samples}"))
    return problems



def describe_float(recipe: Recipe) -> str:
    """What stays float, in words: the sentence the console and report.md print."""
    r = recipe
    int8_weights = [x for x in r.float_layers if x not in r.float_weights]
    parts = []
    if r.float_layers:
        parts.append(f"float layers: {', '.join(r.float_layers)}")
        if r.float_weights and int8_weights:
            parts[-1] += f" ({', '.join(r.float_weights)} with float weights; {', '.join(int8_weights)} with int8 weights)"
        elif r.float_weights:
            parts[-1] += " (with float weights)"
        else:
            parts[-1] += " (with int8 weights)"
    else:
        parts.append("no layer stays float")
    if r.int16_layers:
        parts.append(f"int16 activations in {', '.join(r.int16_layers)}")
    if r.float_inputs:
        parts.append("float inputs")
    if r.calibration_samples:
        parts.append(f"calibrated on {r.calibration_samples} samples")
    return "; ".join(parts)

