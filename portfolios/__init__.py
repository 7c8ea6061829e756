"""The portfolios app."""
