"""ADU, the Air-gapped Data Utility: the Django project package."""

__version__ = "0.1.0"
