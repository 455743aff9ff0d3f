"""Speaker sex (female / male) from speech recordings."""

__version__ = "0.1.0"
