"""Logging in: the users file, the ``superpixel-annotator-users`` command, and basic
authentication on a real Dash app through Flask's test client."""

import base64
import io
import os
import stat
import subprocess
import sys

import dash
import flask
import pytest
from dash import Input, Output, dcc, html
from werkzeug.security import check_password_hash, generate_password_hash

from superpixel_annotator.serve import users as users_command
from superpixel_annotator.web import auth
from superpixel_annotator.web.auth import (
    LOCAL_USER,
    MAX_USERS_FILE_BYTES,
    UsersFileError,
    add_user,
    current_user,
    read_users,
    require_login,
)

# A cheap scrypt, so that the tests of the login do not spend 0.1 s on each check.
FAST_METHOD = "scrypt:1024:8:1"
PASSWORDS = {"alice": "wonderland", "bob@lab.org": "builder"}


def fast_hash(password: str) -> str:
    return generate_password_hash(password, method=FAST_METHOD)


def credentials(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# The users file


def test_added_users_read_back_with_their_passwords(tmp_path):
    path = tmp_path / "users.txt"
    for name, password in PASSWORDS.items():
        add_user(path, name, password)
    users = read_users(path)
    assert list(users) == list(PASSWORDS)
    for name, password in PASSWORDS.items():
        assert users[name].startswith("scrypt:")
        assert check_password_hash(users[name], password)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_comments_blank_lines_and_pbkdf2_hashes_are_read(tmp_path):
    path = tmp_path / "users.txt"
    pbkdf2 = generate_password_hash("x", method="pbkdf2:sha256:1000")
    path.write_text(f"# team A\n\n  carol:{fast_hash('c')}  \r\ndave:{pbkdf2}")
    assert list(read_users(path)) == ["carol", "dave"]


def test_updating_a_user_keeps_the_other_lines(tmp_path):
    path = tmp_path / "users.txt"
    bob = fast_hash("b")
    path.write_text(f"# the team\nalice:{fast_hash('old')}\n\n# builders\nbob:{bob}\n")
    os.chmod(path, 0o640)
    add_user(path, "alice", "new")
    lines = path.read_text().split("\n")
    assert lines[0] == "# the team" and lines[2:] == ["", "# builders", f"bob:{bob}", ""]
    assert check_password_hash(read_users(path)["alice"], "new")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["users.txt"]


def test_a_new_user_goes_after_a_last_line_without_newline(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text(f"alice:{fast_hash('a')}")
    add_user(path, "bob", "b")
    assert list(read_users(path)) == ["alice", "bob"]


HASH = fast_hash("secret")
BAD_FILES = {
    "no colon": ("alice\n", "line 1: expected name:hash"),
    "bad name": (f"# ok\nal ice:{HASH}\n", "line 2: invalid user name"),
    "long name": (f"{'a' * 65}:{HASH}\n", "line 1: invalid user name"),
    "duplicate": (f"alice:{HASH}\n\nalice:{HASH}\n", "line 3: user alice already on line 1"),
    "plain password": ("alice:secret\n", "line 1: unknown password hash method"),
    "unknown method": ("alice:md5$salt$abc\n", "line 1: unknown password hash method"),
    "unknown pbkdf2 digest": ("alice:pbkdf2:nope:10$salt$ab\n", "unknown password hash method"),
    "cut hash": (f"alice:{HASH.rsplit('$', 1)[0]}\n", "line 1: malformed password hash"),
    "no users": ("# nobody yet\n\n", "users.txt: no users"),
    "empty": ("", "users.txt: no users"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_users_file_is_named_with_its_line(tmp_path, case):
    text, message = BAD_FILES[case]
    path = tmp_path / "users.txt"
    path.write_text(text)
    with pytest.raises(UsersFileError, match=message) as raised:
        read_users(path)
    assert str(path) in str(raised.value) and "secret" not in str(raised.value)
    assert HASH.split("$")[1] not in str(raised.value)


def test_a_file_that_is_too_big_or_not_utf8_or_missing_is_refused(tmp_path):
    path = tmp_path / "users.txt"
    path.write_bytes(b"#" * MAX_USERS_FILE_BYTES + b"\n")
    with pytest.raises(UsersFileError, match="over 1,000,000 bytes"):
        read_users(path)
    path.write_bytes(f"alice:{HASH}\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(UsersFileError, match="line 2: not UTF-8"):
        read_users(path)
    with pytest.raises(UsersFileError, match="missing.txt: No such file"):
        read_users(tmp_path / "missing.txt")


def test_adding_to_a_broken_file_leaves_it_as_it_is(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text("alice:secret\n")
    with pytest.raises(UsersFileError, match="line 1"):
        add_user(path, "bob", "b")
    assert path.read_text() == "alice:secret\n"


@pytest.mark.parametrize("name, password", [("", "x"), ("a:b", "x"), ("é", "x"), ("bob", "")])
def test_bad_names_and_empty_passwords_are_refused(tmp_path, name, password):
    with pytest.raises(ValueError):
        add_user(tmp_path / "users.txt", name, password)
    assert not (tmp_path / "users.txt").exists()


# The superpixel-annotator-users command


def test_the_command_adds_from_stdin_and_lists(tmp_path, monkeypatch, capsys):
    path = str(tmp_path / "users.txt")
    monkeypatch.setattr(sys, "stdin", io.StringIO("wonderland\nignored\n"))
    assert users_command.main(["add", path, "alice", "--password-stdin"]) == 0
    assert check_password_hash(read_users(path)["alice"], "wonderland")
    monkeypatch.setattr(sys, "stdin", io.StringIO("builder\r\n"))
    assert users_command.main(["add", path, "bob", "--password-stdin"]) == 0
    capsys.readouterr()
    assert users_command.main(["list", path]) == 0
    assert capsys.readouterr().out == "alice\nbob\n"


def test_the_command_asks_twice_on_the_terminal(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.txt"
    typed = iter(["wonderland", "wonderland", "one", "two"])
    monkeypatch.setattr(users_command.getpass, "getpass", lambda prompt: next(typed))
    assert users_command.main(["add", str(path), "alice"]) == 0
    assert users_command.main(["add", str(path), "alice"]) == 2
    assert capsys.readouterr().err == "superpixel-annotator-users: the passwords differ\n"
    assert check_password_hash(read_users(path)["alice"], "wonderland")


def test_command_errors_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.txt"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    for argv in (
        ["add", str(path), "alice", "--password-stdin"],
        ["add", str(path), "bad name", "--password-stdin"],
        ["list", str(path)],
        ["add", str(tmp_path / "no" / "users.txt"), "alice", "--password-stdin"],
    ):
        assert users_command.main(argv) == 2
        error = capsys.readouterr().err
        assert error.startswith("superpixel-annotator-users: ") and error.count("\n") == 1


def test_the_command_runs_as_a_module(tmp_path):
    path = tmp_path / "users.txt"
    command = [sys.executable, "-m", "superpixel_annotator.serve.users"]
    added = subprocess.run(
        [*command, "add", str(path), "alice", "--password-stdin"],
        input="wonderland\n",
        capture_output=True,
        text=True,
    )
    assert (added.returncode, added.stderr) == (0, "")
    assert check_password_hash(read_users(path)["alice"], "wonderland")


# Logging in to a Dash app


def small_app(users: dict[str, str] | None) -> dash.Dash:
    """A Dash app whose callback answers with :func:`current_user`, protected when
    ``users`` are given."""
    app = dash.Dash(__name__)
    app.layout = html.Div([dcc.Input(id="ask", value=""), html.Div(id="who")])
    app.callback(Output("who", "children"), Input("ask", "value"))(lambda _: current_user())
    if users is not None:
        require_login(app, users)
    return app


def ask_who(client, headers: dict[str, str] | None = None):
    return client.post(
        "/_dash-update-component",
        json={
            "output": "who.children",
            "outputs": {"id": "who", "property": "children"},
            "inputs": [{"id": "ask", "property": "value", "value": "x"}],
            "changedPropIds": ["ask.value"],
            "state": [],
        },
        headers=headers or {},
    )


@pytest.fixture
def client():
    users = {name: fast_hash(password) for name, password in PASSWORDS.items()}
    return small_app(users).server.test_client()


@pytest.mark.parametrize("route", ["/", "/_dash-layout", "/_dash-dependencies"])
def test_every_route_needs_the_right_password(client, route):
    assert client.get(route).status_code == 401
    assert client.get(route, headers=credentials("alice", "wrong")).status_code == 401
    assert client.get(route, headers=credentials("carol", "wonderland")).status_code == 401
    assert client.get(route, headers=credentials("alice", "wonderland")).status_code == 200


@pytest.mark.parametrize("header", ["Bearer abc", "Basic !!!", "basic", "Basic " + "A" * 10])
def test_a_malformed_authorization_header_is_refused(client, header):
    response = client.get("/", headers={"Authorization": header})
    assert response.status_code == 401 and "WWW-Authenticate" in response.headers


def test_callbacks_know_the_logged_in_user(client):
    assert ask_who(client).status_code == 401
    for name, password in PASSWORDS.items():
        response = ask_who(client, credentials(name, password))
        assert response.json["response"]["who"]["children"] == name


def test_without_login_the_user_is_local():
    client = small_app(None).server.test_client()
    response = ask_who(client, credentials("alice", "anything"))
    assert response.json["response"]["who"]["children"] == LOCAL_USER
    assert current_user() == LOCAL_USER


def test_a_verified_password_is_not_checked_again(client, monkeypatch):
    calls = []

    def counted(password_hash: str, password: str) -> bool:
        calls.append(password)
        return check_password_hash(password_hash, password)

    monkeypatch.setattr(auth, "check_password_hash", counted)
    right, wrong = credentials("alice", "wonderland"), credentials("alice", "wonderlanD")
    assert client.get("/", headers=right).status_code == 200
    assert client.get("/_dash-layout", headers=right).status_code == 200
    assert calls == ["wonderland"]
    for _ in range(2):
        assert client.get("/", headers=wrong).status_code == 401
    assert client.get("/", headers=credentials("bob@lab.org", "wonderland")).status_code == 401
    assert calls == ["wonderland", "wonderlanD", "wonderlanD", "wonderland"]


def test_login_needs_users():
    with pytest.raises(ValueError, match="no users"):
        require_login(dash.Dash(__name__), {})


def test_current_user_names_an_oidc_user_by_their_preferred_claim():
    app = dash.Dash(__name__)
    app.server.secret_key = "test"
    claims = {"sub": "8a1f", "email": "ana@example.org", "preferred_username": "ana"}
    for kept, expected in ((claims, "ana"), ({"sub": "8a1f", "email": "e@x.org"}, "e@x.org")):
        with app.server.test_request_context("/"):
            flask.session["user"] = kept
            assert current_user() == expected
    with app.server.test_request_context("/"):
        flask.session["user"] = {"email": ""}
        assert current_user() == LOCAL_USER
