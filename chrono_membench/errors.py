"""Errors every layer may raise, kept apart so that no module needs to import the config to raise one."""


class ConfigError(ValueError):
    """A bad configuration value or input; the message is one line naming the field and what is allowed
    (experiments/run.py turns it into exit code 2)."""


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says why and what to install or set."""


class DataSourceError(RuntimeError):
    """A source cannot be read; the message names the file or dataset and what to do."""
