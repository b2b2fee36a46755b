"""One-window integration gateway: one application in, every department gets its part."""

__version__ = "0.1.0"
