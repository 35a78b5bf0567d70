"""The version, alone: the one name every layer may import without importing the API."""

__version__ = "0.1.0"
