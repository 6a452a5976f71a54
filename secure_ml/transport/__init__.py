"""Transport: the one message path between the processes of a run.

``links`` (every process's point-to-point links, no crypten), ``frames`` (the
codec every message passes), ``objects`` (JSON-and-bytes object messages) and
``communicator`` (CrypTen's communicator carried over the links).
"""
