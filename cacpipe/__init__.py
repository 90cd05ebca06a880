"""cacpipe: coronary artery calcium on routine chest CT."""

__version__ = "0.1.0"
