"""Errors raised by the converter."""


class ConversionError(ValueError):
    """The input checkpoint cannot be converted: missing or malformed files, unknown architecture,
    inconsistent shapes."""
