"""Shared command-line plumbing and error types of `tfrecord_tools`.

Every tool raises a `ToolError` subclass (a `vidcore.errors.UserInputError`)
with one precise, one-line message for errors a user can cause (wrong path,
wrong shape, bad CSV line, corrupt record). `handle_errors` turns those into
one stderr line (formatted by `vidcore.cli`, as for every other CLI) and
exit code 1.

Each CLI module defines its flags on its own `flags.FlagValues()` object
instead of the global `absl.flags.FLAGS`, so that several CLI modules (and
other families' CLIs, which reuse names such as `num_classes` or
`feature_names`) can be imported into one process, e.g. by pytest, without
`DuplicateFlagError`. `run()` attaches them to the global FLAGS only in the
process that actually runs the tool, so absl's --help, --helpfull and
--flagfile work as usual.
"""

import functools

import tensorflow as tf

from vidcore import cli as core_cli
from vidcore.cli import flag_topic  # noqa: F401 - for the tools' --help
from vidcore.errors import DataError, UserInputError


class ToolError(UserInputError):
    """Base of errors a user can cause; str(error) is the full message."""


class InputError(ToolError):
    """Invalid user input: bad flag value, CSV line, array shape or label."""


class MissingInputError(ToolError, FileNotFoundError):
    """A file that the input names or implies does not exist."""

    def __str__(self):
        # FileNotFoundError(msg) already prints msg; keep it plain.
        return str(self.args[0]) if self.args else "file not found"


class CorruptRecordError(ToolError, DataError):
    """A TFRecord shard or one of its records is unreadable or off-schema."""


def handle_errors(main):
    """Decorates a CLI `main(argv)`: user errors become one stderr line + rc 1.

    Args:
        main: function `main(argv) -> int | None`.

    Returns:
        The wrapped function; it returns 1 after printing `error: <message>` to
        stderr when `main` raises a `ToolError`, an `OSError` or a TensorFlow
        `OpError` (file-system errors of `tf.io.gfile`, e.g. permission
        denied on the output directory), else whatever `main` returned.
    """

    @functools.wraps(main)
    def wrapper(argv):
        try:
            core_cli.check_path_schemes()
            return main(argv)
        except (UserInputError, OSError, tf.errors.OpError) as e:
            core_cli.print_user_error(e)
            return 1

    return wrapper


def run(main, flag_values):
    """Runs `main` under `absl.app.run` with the module's own flags.

    `--help` lists every flag of the tool, grouped by topic, and exits 0;
    a bad flag value is one `error:` line (see `vidcore.cli.run_app`).

    Args:
        main: the CLI's `main(argv)`.
        flag_values: the module's `flags.FlagValues` with its flags.
    """
    core_cli.run_app(main, flag_values)


def parse_int_list(text, flag_name):
    """Parses "1024,128" into [1024, 128].

    Args:
        text: comma-separated integers.
        flag_name: flag the text came from, for the error message.

    Returns:
        List of ints.

    Raises:
        InputError: an item is not an integer.
    """
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [int(t) for t in items]
    except ValueError:
        raise InputError(
            f"--{flag_name}={text!r}: expected comma-separated "
            "integers") from None


def parse_name_list(text):
    """Parses "rgb,audio" into ["rgb", "audio"] (blank items dropped)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def csv_table_rows(csv_path, header, rows):
    """Yields (where, {column: stripped field}) of a CSV's non-blank rows.

    Args:
        csv_path: the file, for messages ("path:line").
        header: the column names.
        rows: the csv.reader after the header (its line_num is used).

    Raises:
        InputError: a line with another number of fields, naming it.
    """
    for fields in rows:
        if not any(f.strip() for f in fields):
            continue
        where = f"{csv_path}:{rows.line_num}"
        if len(fields) != len(header):
            raise InputError(
                f"{where}: malformed line {','.join(fields)!r}: expected "
                f"{len(header)} fields ({','.join(header)}), got "
                f"{len(fields)}")
        yield where, {h: f.strip() for h, f in zip(header, fields)}
