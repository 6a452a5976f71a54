"""Transport: how party processes reach each other (CrypTen's communicator)."""

from secure_ml.transport.communicator import connect, disconnect

__all__ = ["connect", "disconnect"]
