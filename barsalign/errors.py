"""The one exception type for user errors: the CLI prints it as one line and exits 2."""

from __future__ import annotations


class BarsalignError(Exception):
    """A problem with the user's input (file, parameter, folder): the message says what to do.

    The message is one line: a library's multi-line text inside it (a YAML parser's pointer
    to the bad column, say) is folded onto it, each run of blanks and newlines one space.
    """

    def __init__(self, message: object = "") -> None:
        text = str(message)
        super().__init__(" ".join(text.split()) if "\n" in text or "\r" in text else message)
