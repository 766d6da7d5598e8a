"""paperwatch: watch Hugging Face Daily Papers and mail each reader what their rules match."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/paperwatch/paperwatch"
