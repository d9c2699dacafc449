"""Logging in from Chromium: a Dash app protected by ``require_login`` on a real server."""

import threading

import dash
import pytest
from dash import Input, Output, dcc, html
from werkzeug.serving import make_server

from superpixel_annotator.web.auth import add_user, current_user, read_users, require_login

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def login_url(tmp_path_factory):
    """A small Dash app that shows who is logged in, protected by the users file's one
    user ``alice``, served from a thread."""
    users_file = tmp_path_factory.mktemp("login") / "users.txt"
    add_user(users_file, "alice", "wonderland")
    app = dash.Dash(__name__)
    app.layout = html.Div([dcc.Location(id="url"), html.Div(id="who")])
    app.callback(Output("who", "children"), Input("url", "pathname"))(
        lambda _: f"Signed in as {current_user()}"
    )
    require_login(app, read_users(users_file))
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}/"
    server.shutdown()
    thread.join()


@pytest.mark.parametrize(
    "password, status, shown", [("wonderland", 200, "Signed in as alice"), ("wrong", 401, "")]
)
def test_the_page_opens_with_the_right_password_only(browser, login_url, password, status, shown):
    context = browser.new_context(http_credentials={"username": "alice", "password": password})
    page = context.new_page()
    try:
        assert page.goto(login_url).status == status
        if shown:
            page.wait_for_selector(f"#who:has-text('{shown}')", timeout=TIMEOUT_MS)
    finally:
        context.close()
