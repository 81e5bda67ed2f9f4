"""Where pomona's Ray work runs: the embedded local Ray by default, or a cluster address."""
