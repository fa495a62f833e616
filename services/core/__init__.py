"""Shared kernel of every Tailor service: the only code services share."""
