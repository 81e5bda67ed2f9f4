"""pomona: labelled images to a served, versioned image classifier on Ray."""

__version__ = "0.1.0"
