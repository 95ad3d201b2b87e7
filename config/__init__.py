"""Settings for every callqueue process, read from the environment."""

from callqueue.config.settings import Settings, load_caller_settings, load_settings

__all__ = ["Settings", "load_caller_settings", "load_settings"]
