"""`tfship repair`: rebuild a target with a repair search on failed quantized variants
(report.md's section on it is `pipeline.reports.repairs`).

The search itself belongs to the target (`Target.repair`, e.g. targets/support/repair/
for tflite); a run records it under the failed variant's entry as `repair`.
"""
from __future__ import annotations

import sys

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
    p.add_argument("--variant", action="append", required=True, metavar="V", help="variant to repair, e.g. int8 ('default' for a target with one file, e.g. edgetpu); repeatable")
    p.set_defaults(handler=run)


def _check_request(configs, target_name: str, variants: list[str]) -> None:
    from targets import REGISTRY
    from pipeline.target import Target

    problems = []
    if target_name not in REGISTRY:
        raise ConfigError([Problem("", None, "--target", f"unknown target '{target_name}'; known: {', '.join(REGISTRY.names())}")])
    target = REGISTRY.get(target_name)
    if type(target).repair is Target.repair:
        searching = [n for n in REGISTRY.names() if type(REGISTRY.get(n)).repair is not Target.repair]
        problems.append(Problem("", None, "--target", f"target '{target_name}' has no repair search; these have one: {', '.join(searching)}"))
    for config in configs:
        try:
            target_cfg = config.target(target_name)
        except KeyError:
            problems.append(Problem(str(config.file), None, "targets", f"model '{config.name}' does not configure target '{target_name}'; add it under `targets:`"))
            continue
        known = [v or "default" for v in target.variants(target_cfg.options)]
        for v in variants:
            if v not in known:
                problems.append(Problem(str(config.file), None, "--variant", f"model '{config.name}': {target_name} has no variant '{v}'; it has: {', '.join(known)}"))
    if problems:
        raise ConfigError(problems)


def run(args) -> int:
    from pipeline.commands._common import selected_configs
    from pipeline.execute.console import quiet_tensorflow

    configs = selected_configs(args)
    _check_request(configs, args.target, args.variant)
    quiet_tensorflow()
    from pipeline.execute.export import export
    from pipeline.reports.model import read_report

    export(configs, [args.target], args.artifacts, repair={args.target: ["" if v == "default" else v for v in args.variant]})
    code = 0
    for config in configs:
        entry = ((read_report(args.artifacts / config.name) or {}).get("targets") or {}).get(args.target) or {}
        variants = entry.get("variants") or {}
        for v in args.variant:
            record = variants.get(v) or (entry if not variants else {})  # a target with one file keeps its fields at the top
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
