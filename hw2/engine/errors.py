"""The errors hw2 raises for what a user gave it (a parameter, a profile, a file, a run folder): the command line
prints each as one line, without a traceback."""


class UserError(Exception):
    """Something the user can fix; the message says what was wrong and what to do."""


class ConfigError(UserError, ValueError):
    """A parameter or profile that cannot be used, with a message that says what to do instead."""
