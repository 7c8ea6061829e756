"""The orders part of the REST API under /api/v1/: baskets with their workflow actions,
orders, compliance results (with overrides), compliance rules and restrictions (DESIGN 10)."""
