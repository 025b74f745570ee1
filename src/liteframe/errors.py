"""Errors that mean "bad input from the user" (a file, a folder, a config): the CLI prints them as one line
and exits with code 2."""


class InputError(ValueError):
    """Bad input: the message names the file or value and the reason."""
