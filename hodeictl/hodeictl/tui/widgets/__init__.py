"""Widgets of the operator console, grouped by the region of the screen they fill."""
