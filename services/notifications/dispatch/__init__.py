"""Dispatch: channel adapters, claim/send/record steps, the background loops."""
