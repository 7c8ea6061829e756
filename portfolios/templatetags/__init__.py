"""Template tags of the portfolios app."""
