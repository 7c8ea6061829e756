"""The portfolios part of the REST API under /api/v1/ (DESIGN 10)."""
