"""Release: the only way out of the shared domain (``reveal``), and its mechanisms."""

from secure_ml.release.mechanism import Release, ReleaseMechanism, RevealSession
from secure_ml.release.reveal import reveal

__all__ = ["Release", "ReleaseMechanism", "RevealSession", "reveal"]
