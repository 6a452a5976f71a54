"""Release: the only way out of the shared domain (``reveal``)."""

from secure_ml.release.reveal import reveal

__all__ = ["reveal"]
