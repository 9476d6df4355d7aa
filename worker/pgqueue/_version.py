"""The version of pgqueue, in one place: the build reads it (pyproject ``dynamic``), the CLIs and
``pgqueue.__version__`` read the installed metadata made from it."""

__version__ = "0.1.0"
