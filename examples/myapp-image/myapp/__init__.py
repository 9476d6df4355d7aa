"""An example task package for the pgqueue worker image (examples/myapp-image)."""

__version__ = "1.0.0"
