"""Error types shared by every golden model and by the Python entry points."""


class FormatError(ValueError):
    """A malformed operand, format, trace or parameter.

    The message always names the offending field and value, so a user feeding
    their own matrices can find the problem without reading our source.
    """
