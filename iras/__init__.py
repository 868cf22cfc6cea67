"""IRAS: an incident-response pipeline for on-call teams."""

__version__ = "0.1.0"
