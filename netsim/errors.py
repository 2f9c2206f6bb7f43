"""The one error class of bad input: netsim's command line turns it into one line and exit
code 2. Anything else that escapes is a bug of ours and keeps its traceback."""


class InputError(ValueError):
    """A bad file, value or request from the user: one line naming what is wrong."""
