"""Logging in: a users file of password hashes, and HTTP basic authentication on every
route of a Dash app (dash-auth).

The users file is UTF-8 text with one user per line, ``name:hash``, where ``hash`` is made
by :func:`werkzeug.security.generate_password_hash` (scrypt by default); ``#`` comments
and blank lines are allowed. ``superpixel-annotator-users add`` writes it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
from pathlib import Path

import dash
import dash_auth
import flask
from werkzeug.security import check_password_hash, generate_password_hash

LOCAL_USER = "local"
OIDC_NAME_CLAIMS = ("preferred_username", "email", "sub")
"""The claims of an OIDC user (dash-auth keeps them in ``flask.session["user"]``) that name
them, in order of preference."""
MAX_USERS_FILE_BYTES = 1_000_000
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
NAME_RULE = "1-64 letters, digits, '.', '_', '-' or '@'"
# The methods generate_password_hash writes, always with their parameters spelt out.
SCRYPT_METHOD = re.compile(r"scrypt:\d+:\d+:\d+")
PBKDF2_METHOD = re.compile(r"pbkdf2:([\w-]+):\d+")
SALT_AND_HASH = re.compile(r"[A-Za-z0-9]+\$[0-9a-f]+")
LOGIN_EXTENSION = "superpixel_annotator.login"


class UsersFileError(ValueError):
    """A users file that cannot be used; the message names the file and, for a bad line,
    its number, and never holds a hash or password."""


def check_name(name: str) -> None:
    """Refuse a user name that the users file cannot hold.

    Raises
    ------
    ValueError
        When ``name`` is not 1-64 letters, digits, ``.``, ``_``, ``-`` or ``@``.
    """
    if not NAME.fullmatch(name):
        raise ValueError(f"invalid user name: use {NAME_RULE}")


def known_method(method: str) -> bool:
    """Whether ``method`` (the part of a hash before its first ``$``) is one that
    :func:`werkzeug.security.check_password_hash` can check."""
    pbkdf2 = PBKDF2_METHOD.fullmatch(method)
    if pbkdf2:
        return pbkdf2.group(1) in hashlib.algorithms_available
    return SCRYPT_METHOD.fullmatch(method) is not None


def read_text(path: Path) -> str:
    """The users file's text, its size checked before it is read.

    Raises
    ------
    OSError
        When the file cannot be read.
    UsersFileError
        When it is over :data:`MAX_USERS_FILE_BYTES` or not UTF-8.
    """
    with open(path, "rb") as file:
        too_big = UsersFileError(f"{path}: over {MAX_USERS_FILE_BYTES:,} bytes")
        if os.fstat(file.fileno()).st_size > MAX_USERS_FILE_BYTES:
            raise too_big
        data = file.read(MAX_USERS_FILE_BYTES + 1)
    if len(data) > MAX_USERS_FILE_BYTES:
        raise too_big
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        number = data.count(b"\n", 0, error.start) + 1
        raise UsersFileError(f"{path}, line {number}: not UTF-8 text") from None


def parse_users(path: Path, lines: list[str]) -> dict[str, tuple[int, str]]:
    """Each user of the file's ``lines``: name -> (line index, password hash).

    Raises
    ------
    UsersFileError
        At the first malformed line, duplicate name or unknown hash method.
    """
    users: dict[str, tuple[int, str]] = {}
    for index, line in enumerate(lines):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        name, colon, password_hash = entry.partition(":")
        where = f"{path}, line {index + 1}"
        if not colon:
            raise UsersFileError(f"{where}: expected name:hash")
        if not NAME.fullmatch(name):
            raise UsersFileError(f"{where}: invalid user name: use {NAME_RULE}")
        if name in users:
            raise UsersFileError(f"{where}: user {name} already on line {users[name][0] + 1}")
        method, _, salt_and_hash = password_hash.partition("$")
        if not known_method(method):
            raise UsersFileError(
                f"{where}: unknown password hash method (expected a scrypt or pbkdf2 hash "
                "made by werkzeug's generate_password_hash)"
            )
        if not SALT_AND_HASH.fullmatch(salt_and_hash):
            raise UsersFileError(f"{where}: malformed password hash")
        users[name] = (index, password_hash)
    return users


def read_users(path: str | os.PathLike) -> dict[str, str]:
    """Read a users file.

    Parameters
    ----------
    path : str or path-like
        The users file (at most :data:`MAX_USERS_FILE_BYTES`).

    Returns
    -------
    dict of str to str
        Password hash by user name.

    Raises
    ------
    UsersFileError
        When the file cannot be read, is too big, is not UTF-8, has a malformed line, a
        duplicate name or an unknown hash method, or has no users.
    """
    path = Path(path)
    try:
        text = read_text(path)
    except OSError as error:
        raise UsersFileError(f"{path}: {error.strerror or error}") from None
    users = {name: entry[1] for name, entry in parse_users(path, text.split("\n")).items()}
    if not users:
        raise UsersFileError(f"{path}: no users")
    return users


def write_atomically(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to a temporary file beside ``path`` with permissions ``mode``, flush
    it to disk, then rename it over ``path``: readers see the old file or the new one."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def add_user(path: str | os.PathLike, name: str, password: str) -> None:
    """Add a user to a users file, or give an existing user a new password.

    The user's line is replaced (other lines and comments are kept) or appended; a new
    file is created with mode ``0o600``, an existing one keeps its mode. The file is
    replaced atomically.

    Parameters
    ----------
    path : str or path-like
        The users file, created if missing.
    name : str
        1-64 letters, digits, ``.``, ``_``, ``-`` or ``@``.
    password : str
        Not empty; stored as a :func:`werkzeug.security.generate_password_hash` hash.

    Raises
    ------
    ValueError
        When the name or password is not allowed.
    UsersFileError
        When the existing file is not a valid users file (it is left as it is).
    OSError
        When the file cannot be read or written.
    """
    check_name(name)
    if not password:
        raise ValueError("empty password")
    path = Path(path)
    try:
        text, mode = read_text(path), path.stat().st_mode & 0o777
    except FileNotFoundError:
        text, mode = "", 0o600
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    users = parse_users(path, lines)
    new_line = f"{name}:{generate_password_hash(password)}"
    if name in users:
        lines[users[name][0]] = new_line
    else:
        lines.append(new_line)
    write_atomically(path, "\n".join(lines) + "\n", mode)


class HashedBasicAuth(dash_auth.BasicAuth):
    """dash-auth's basic authentication, reading the credentials with werkzeug's parser:
    a malformed ``Authorization`` header is refused with 401 (dash-auth 2.3 answers 500),
    and nothing is written to the Flask session (dash-auth 2.3 logs a warning on each
    request of an app without a secret key)."""

    def is_authorized(self) -> bool:
        """Whether the request's basic credentials pass the ``auth_func``."""
        credentials = flask.request.authorization
        if credentials is None or credentials.type != "basic":
            return False
        return self._auth_func(credentials.username, credentials.password)


def require_login(app: dash.Dash, users: dict[str, str]) -> None:
    """Ask for a user name and password (HTTP basic authentication) on every route of
    ``app``.

    A password is checked with :func:`werkzeug.security.check_password_hash`; one scrypt
    check at werkzeug's default cost takes about 130 ms of CPU (measured on a 2-core AMD
    EPYC server), and a page makes hundreds of requests. So each successful check is
    remembered by this process, keyed by the name and a digest of the password (with a
    random key of this process); at most one per user, as only the right password passes.
    A failed check is never remembered. An unknown name costs a check too, so that the
    answer's delay does not tell which names exist.

    Parameters
    ----------
    app : dash.Dash
        The app to protect; see :func:`current_user` for who is logged in.
    users : dict of str to str
        Password hash by user name (:func:`read_users`); copied.

    Raises
    ------
    ValueError
        When ``users`` is empty.
    """
    if not users:
        raise ValueError("no users")
    users = dict(users)
    some_hash = next(iter(users.values()))
    digest_key = secrets.token_bytes(32)
    verified: set[tuple[str, bytes]] = set()

    def check(name: str, password: str) -> bool:
        key = (name, hmac.digest(digest_key, password.encode(), "sha256"))
        if key in verified:
            return True
        if name not in users:
            check_password_hash(some_hash, password)  # as slow as for a known name
            return False
        if not check_password_hash(users[name], password):
            return False
        verified.add(key)
        return True

    HashedBasicAuth(app, auth_func=check)
    app.server.extensions[LOGIN_EXTENSION] = True


def current_user() -> str:
    """The name of the user making the current request.

    Returns
    -------
    str
        The logged-in user's name on an app protected by :func:`require_login`; on an app
        protected by dash-auth's ``OIDCAuth``, the user's ``preferred_username``, else
        ``email``, else ``sub`` claim; else :data:`LOCAL_USER` (single-user mode, or no
        request, as in a background job).
    """
    if not flask.has_request_context():
        return LOCAL_USER
    if LOGIN_EXTENSION in flask.current_app.extensions:
        return flask.request.authorization.username
    oidc_user = flask.session.get("user")
    if isinstance(oidc_user, dict):
        for claim in OIDC_NAME_CLAIMS:
            if isinstance(oidc_user.get(claim), str) and oidc_user[claim]:
                return oidc_user[claim]
    return LOCAL_USER
