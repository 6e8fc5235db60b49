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
