"""Sharing: turning a party's plaintext into secret shares (and the dealer).

``mpc`` holds the CrypTen glue (encoding checks, ``share``); ``dealer`` serves
Beaver triples as CrypTen's trusted third party. These modules (with compat and
transport) are where ``crypten`` is imported.
"""
