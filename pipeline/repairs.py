"""Quantization repair, the pipeline's side: the `tfship repair` command and how a
repair search reads in report.md.

The search itself belongs to the target (`Target.repair`, e.g. targets/support/repair.py
for tflite); a run records it under the failed variant's entry as `repair`.
"""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline.errors import ConfigError, Problem


def register(sub, common) -> None:
    p = sub.add_parser(
        "repair",
        help="rebuild a target and, when a quantized variant fails parity, search for a recipe that passes",
        description=(
            "Rebuilds the target and, when the variant fails parity, tries quantization recipes (layers kept "
            "in float, 16-bit activations, wider calibration), verifying each with the variant's own parity. "
            "A passing recipe is published as <variant>_repaired with the config snippet that reproduces it."
        ),
    )
    common(p)
    p.add_argument("--target", default="tflite", metavar="T", help="target holding the variant (default: %(default)s)")
    p.add_argument("--variant", action="append", required=True, metavar="V", help="variant to repair, e.g. int8; repeatable")
    p.set_defaults(handler=run_command)


def _check_request(configs, target_name: str, variants: list[str]) -> None:
    from targets import REGISTRY
    from pipeline.target import Target

    problems = []
    if target_name not in REGISTRY:
        raise ConfigError([Problem("", None, "--target", f"unknown target '{target_name}'; known: {', '.join(REGISTRY.names())}")])
    target = REGISTRY.get(target_name)
    if type(target).repair is Target.repair:
        problems.append(Problem("", None, "--target", f"target '{target_name}' has no repair search; tflite has one"))
    for config in configs:
        try:
            target_cfg = config.target(target_name)
        except KeyError:
            problems.append(Problem(str(config.file), None, "targets", f"model '{config.name}' does not configure target '{target_name}'; add it under `targets:`"))
            continue
        known = target.variants(target_cfg.options)
        for v in variants:
            if v not in known:
                problems.append(Problem(str(config.file), None, "--variant", f"model '{config.name}': {target_name} has no variant '{v}'; it has: {', '.join(known)}"))
    if problems:
        raise ConfigError(problems)


def run_command(args) -> int:
    from pipeline.cli import _quiet_tensorflow, config_files
    from pipeline.config import load_configs

    configs = load_configs(config_files(args.model, args.config_dir))
    _check_request(configs, args.target, args.variant)
    _quiet_tensorflow()
    from pipeline.report import read_report
    from pipeline.run import export

    export(configs, [args.target], args.artifacts, repair={args.target: list(args.variant)})
    code = 0
    for config in configs:
        entry = ((read_report(args.artifacts / config.name) or {}).get("targets") or {}).get(args.target) or {}
        variants = entry.get("variants") or {}
        for v in args.variant:
            record = variants.get(v) or {}
            status = record.get("status") or entry.get("status", "error")
            if status == "passed":
                print(f"{config.name} {args.target}/{v}: passes parity; nothing to repair")
            elif "repair" in record:
                search = record["repair"]
                print(f"{config.name} {args.target}: {search['summary']}")
                if search.get("found"):
                    print(f"to ship it, add under the {args.target} target of {config.file}:\n{search['config_snippet']}")
                else:
                    code = 1
            else:
                print(f"{config.name} {args.target}/{v}: {status}: {record.get('message') or entry.get('message') or 'see report.md'}")
                code = max(code, 2 if status == "error" and (record or entry).get("exit_code") == 2 else 1)
    print(f"\nreports: {args.artifacts}/<model>/report.json and report.md", file=sys.stderr)
    return code


# --------------------------------------------------------------------------- report.md


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def render_repairs_markdown(report: dict) -> str:
    """The `## Quantization repairs` section: one block per searched variant."""
    blocks = []
    for name, entry in sorted(report.get("targets", {}).items()):
        for variant, sub in sorted((entry.get("variants") or {}).items()):
            search = sub.get("repair")
            if not search:
                continue
            lines = [f"### {name}/{variant}", "", search["summary"], ""]
            lines.append(f"Blame order ({search.get('blame_source')}): {', '.join(search.get('blame') or []) or 'none'}.")
            for inp, c in (search.get("calibration_coverage") or {}).items():
                lines.append(
                    f"Calibration coverage of input `{inp}`: {100 * c['outside_share']:.2f}% of parity values outside the calibrated "
                    f"[{c['calibrated_min']:.4g}, {c['calibrated_max']:.4g}] ({c['calibrated_samples']} samples)."
                )
            sizes = search.get("sizes") or {}
            lines += ["", "| # | recipe | result | bytes | max_abs | top-1 | accuracy | s |", "|---|---|---|---|---|---|---|---|"]
            for i, c in enumerate(search.get("tried") or [], 1):
                r = c["recipe"]
                what = "; ".join(
                    part
                    for part in (
                        r["base"],
                        f"float: {', '.join(r['float_layers'])}" if r.get("float_layers") else "",
                        f"float weights: {', '.join(r['float_weights'])}" if r.get("float_weights") else "",
                        f"int16: {', '.join(r['int16_layers'])}" if r.get("int16_layers") else "",
                        "float inputs" if r.get("float_inputs") else "",
                        f"{r['calibration_samples']} calibration samples" if r.get("calibration_samples") else "",
                    )
                    if part
                )
                lines.append(
                    f"| {i} | {what} | {c['status']} | {_fmt(c.get('size_bytes'))} | {_fmt(c.get('max_abs'))} | "
                    f"{_fmt(c.get('top1_agreement'))} | {_fmt(c.get('accuracy'))} | {_fmt(c.get('seconds'))} |"
                )
            lines.append("")
            lines.append(
                f"Sizes: float32 {_fmt(sizes.get('float32_bytes'))} bytes, plain {variant} {_fmt(sizes.get(f'{variant}_bytes'))} bytes. "
                f"Budget: {search['budget']['conversions']} conversions, {search['budget']['seconds']:g} s; used {search['conversions']} "
                f"in {search['seconds']:.1f} s ({search['stopped']}). Quantizer: {search.get('engine')}."
            )
            if search.get("found"):
                lines += ["", "Verified recipe (add under the target in the config):", "", "```yaml", search["config_snippet"], "```"]
            blocks.append("\n".join(lines))
    if not blocks:
        return ""
    return "## Quantization repairs\n\n" + "\n\n".join(blocks) + "\n"
