"""The compliance app."""
