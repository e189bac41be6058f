"""The project's own exceptions: every bad input ends in one of these, with a message a user can act on."""


class DprRagError(Exception):
    """Base class of every error this project raises on purpose."""


class DataFormatError(DprRagError, ValueError):
    """A corpus or QA file is missing, empty or malformed; the message names the file and line."""


class ConfigError(DprRagError, ValueError):
    """An option has a value the project cannot use (unknown retriever, empty query, bad k...)."""
