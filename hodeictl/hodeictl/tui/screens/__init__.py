"""The screens of the operator console: one a module."""
