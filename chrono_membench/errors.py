"""Errors every layer may raise, kept apart so that no module needs to import the config to raise one."""


class ConfigError(ValueError):
    """A bad configuration value or input; the message is one line naming the field and what is allowed
    (experiments/run.py turns it into exit code 2)."""
