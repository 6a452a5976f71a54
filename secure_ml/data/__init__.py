"""Data: where each party's plaintext comes from, and how it is partitioned.

A party's plaintext is loaded only inside that party's process.
"""
