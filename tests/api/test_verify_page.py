"""The verify-mode page: shell, data attributes, shortcuts; its JSON twin is the verify API."""

from bs4 import BeautifulSoup

from tests.factories import make_project


def test_verify_page_renders_the_shell(client):
    project = make_project(client, name="negatives")
    response = client.get(f"/projects/{project['id']}/verify")
    assert response.status_code == 200
    soup = BeautifulSoup(response.text, "html.parser")
    app = soup.find(id="verify-app")
    assert app["data-project-id"] == str(project["id"]) and app["data-api-base"] == "/api/v1"
    keys = {b["aria-keyshortcuts"]: b["data-verdict"] for b in soup.select("[data-verdict]")}
    assert keys == {"n": "negative", "y": "false_negative"}
    assert soup.find("script", src="/static/verify.js") is not None
    assert "Content-Security-Policy" in response.headers
    assert client.get("/static/verify.js").status_code == 200


def test_verify_page_of_unknown_project_is_404(client):
    assert client.get("/projects/999999/verify").status_code == 404


def test_verify_page_has_a_pseudo_label_mode(client):
    project = make_project(client, name="pseudo", labels=["a", "b", "c"])
    response = client.get(f"/projects/{project['id']}/verify", params={"mode": "pseudo"})
    assert response.status_code == 200
    soup = BeautifulSoup(response.text, "html.parser")
    app = soup.find(id="verify-app")
    assert app["data-mode"] == "pseudo"
    keys = {b["aria-keyshortcuts"]: b["data-verdict"] for b in soup.select("[data-verdict]")}
    assert keys == {"y": "accept", "n": "reject"}
    corrections = {b["data-key"]: b["data-label"] for b in soup.select("#labels .label-button")}
    assert corrections == {"1": "a", "2": "b", "3": "c"}  # a label key rejects and corrects
    tabs = {a["href"]: a.get("aria-current") for a in soup.select("nav.tabs a")}
    assert tabs == {"?mode=negatives": None, "?mode=pseudo": "page"}
    help_keys = {k.get_text() for k in soup.select("dialog#help kbd")}
    assert {"y", "n", "1", "2", "3", "g", "?"} <= help_keys


def test_verify_page_mode_is_validated(client):
    project = make_project(client, name="modes")
    response = client.get(f"/projects/{project['id']}/verify", params={"mode": "other"})
    assert response.status_code == 422
    default = BeautifulSoup(client.get(f"/projects/{project['id']}/verify").text, "html.parser")
    assert default.find(id="verify-app")["data-mode"] == "negatives"
    assert default.select_one("#labels") is None
