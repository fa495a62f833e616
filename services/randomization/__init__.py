"""Randomization service: sealed stratified lists, allocation, blinding, emergency unblinding.

The pure rules live in `services.randomization.domain`; importing this package connects to
nothing.
"""
