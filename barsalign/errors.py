"""The one exception type for user errors: the CLI prints it as one line and exits 2."""


class BarsalignError(Exception):
    """A problem with the user's input (file, parameter, folder): the message says what to do."""
