"""Tests of the pure optimizer (no database)."""
