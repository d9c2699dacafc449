"""The ``superpixel-annotator-users`` command: adding users to a users file and listing
them (see :mod:`superpixel_annotator.web.auth` for the file's format).

``superpixel-annotator-users add USERS_FILE NAME`` asks for the password twice on the
terminal, or reads one line from stdin with ``--password-stdin``;
``superpixel-annotator-users list USERS_FILE`` prints the names.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from ..web.auth import add_user, check_name, read_users

PROGRAM = "superpixel-annotator-users"


class CommandError(Exception):
    """What stops the command with a one-line message."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Manage the users file of an annotator server (--users)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a user, or set a user's new password")
    add.add_argument("users_file", metavar="USERS_FILE", help="the users file (created if missing)")
    add.add_argument("name", metavar="NAME", help="1-64 letters, digits, '.', '_', '-' or '@'")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (for scripts)",
    )
    listing = commands.add_parser("list", help="print the user names, one per line")
    listing.add_argument("users_file", metavar="USERS_FILE", help="the users file")
    return parser


def read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice on the terminal.

    Raises
    ------
    CommandError
        When no password is given or the two typed passwords differ.
    """
    try:
        if from_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Repeat password: ") != password:
                raise CommandError("the passwords differ")
    except (EOFError, KeyboardInterrupt):
        raise CommandError("no password given") from None
    if not password:
        raise CommandError("empty password")
    return password


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the process exit code (2 after an error)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "add":
            check_name(args.name)
            add_user(args.users_file, args.name, read_password(args.password_stdin))
            print(f"{args.name} saved in {args.users_file}")
        else:
            print("\n".join(read_users(args.users_file)))
    except (CommandError, ValueError, OSError) as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
