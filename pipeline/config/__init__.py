"""Model configs from YAML: `load_config(file, registry)` and `load_configs(files, registry)`
return frozen `pipeline.spec.ModelConfig`s or raise one ConfigError listing every problem
(file, line, key path). The target registry is handed in: nothing here imports `targets`."""
from pipeline.config.files import config_files
from pipeline.config.loader import load_config, load_configs, require_selected

__all__ = ["config_files", "load_config", "load_configs", "require_selected"]
