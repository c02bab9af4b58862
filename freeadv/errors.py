"""The one kind of error a user fixes: a bad value, a bad or missing file, a missing setting.

``freeadv``'s command line prints a UserError (and an OSError or a YAML error) as one line that
names the value or file and exits 2; any other exception is a bug and keeps its traceback. Each
area's own error (a config key, a dataset, an attack spec, a result file...) subclasses it.
It subclasses ValueError, so callers that catch a bad value keep working.
"""


class UserError(ValueError):
    """A bad value, file or setting, told in one line that names it."""
