"""Which config files a command's `--model` / `--config-dir` select."""
from __future__ import annotations

from pathlib import Path

from pipeline.errors import ConfigError, Problem


def config_files(models: list[str] | None, config_dir: Path) -> list[Path]:
    """The config files for `--model` names or paths (every config in `config_dir` when none)."""
    if not models:
        files = sorted(config_dir.glob("*.yaml")) + sorted(config_dir.glob("*.yml"))
        if not files:
            raise ConfigError([Problem(str(config_dir), None, "", "no model configs (*.yaml) found; create configs/models/<name>.yaml")])
        return files
    files, problems = [], []
    for model in models:
        path = Path(model)
        if path.suffix in (".yaml", ".yml") and path.is_file():
            files.append(path)
            continue
        candidates = [config_dir / f"{model}.yaml", config_dir / f"{model}.yml"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            known = sorted(p.stem for p in config_dir.glob("*.y*ml"))
            problems.append(Problem(str(config_dir), None, "--model", f"no config for model '{model}'; known: {', '.join(known) or 'none'}"))
        else:
            files.append(found)
    if problems:
        raise ConfigError(problems)
    return files
