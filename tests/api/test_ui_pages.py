"""The labeling page: server-rendered shell, its data attributes, static modules, shortcut help,
escaping of pool data, and the pure keymap reducer (run under node when it is installed)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

API = "/api/v1"
PAYLOAD = "<script>alert(1)</script>"
IMG_PAYLOAD = "<img src=x onerror=alert(2)>"
JS_TYPES = ("text/javascript", "application/javascript")
KEYMAP_JS = Path(__file__).resolve().parents[2] / "ui" / "static" / "keymap.js"


def _project(client, name="ui", labels=("a", "b", "c"), task="multiclass"):
    body = {"name": name, "task": task, "labels": list(labels), "modality": "vector"}
    response = client.post(f"{API}/projects", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _items(client, pid, n=4):
    records = [
        {
            "vector": [float(i), 1.0, 0.5, -1.0],
            "text": f"{PAYLOAD}\n{IMG_PAYLOAD} #{i}",
            "meta": {"note": IMG_PAYLOAD},
        }
        for i in range(n)
    ]
    response = client.post(f"{API}/projects/{pid}/items", json=records)
    assert response.status_code == 201, response.text


def _page(client, url="/"):
    response = client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response, BeautifulSoup(response.text, "html.parser")


def test_no_projects_shows_how_to_create_one(client):
    _response, soup = _page(client)
    main = soup.find("main")
    assert main is not None and not main.has_attr("data-project-id")
    assert "No projects yet" in main.get_text()
    command = main.find("pre").get_text()
    assert "curl -X POST" in command and f"{API}/projects" in command
    assert soup.find("script", type="module") is None


def test_page_carries_the_project_in_data_attributes(client):
    project = _project(client)
    _items(client, project["id"])
    for url in ("/", f"/?project={project['id']}", f"/projects/{project['id']}/label"):
        _response, soup = _page(client, url)
        main = soup.find("main")
        assert main["data-project-id"] == str(project["id"])
        assert json.loads(main["data-labels"]) == ["a", "b", "c"]
        assert main["data-task"] == "multiclass"
        assert main["data-modality"] == "vector"
        assert main["data-api-base"] == API
        assert soup.select_one("#total-count").get_text() == "4"
        assert soup.select_one("#labeled-count").get_text() == "0"


def test_project_picker_defaults_to_newest_and_follows_the_url(client):
    older = _project(client, name="older")
    newer = _project(client, name="newer")
    _response, soup = _page(client)
    select = soup.select_one("form.picker select[name=project]")
    assert [o["value"] for o in select.find_all("option")] == [str(newer["id"]), str(older["id"])]
    assert select.find("option", selected=True)["value"] == str(newer["id"])
    assert soup.find("main")["data-project-id"] == str(newer["id"])

    _response, soup = _page(client, f"/?project={older['id']}")
    assert soup.find("main")["data-project-id"] == str(older["id"])
    assert soup.select_one("select[name=project] option[selected]")["value"] == str(older["id"])


@pytest.mark.parametrize("url", ["/projects/999999/label", "/?project=999999", "/?project=abc"])
def test_unknown_project_is_a_404_page(client, url):
    _project(client)
    response = client.get(url)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Not found" in BeautifulSoup(response.text, "html.parser").find("h1").get_text()


def test_static_modules_are_served_with_a_js_type(client):
    _project(client)
    _response, soup = _page(client)
    scripts = [s["src"] for s in soup.find_all("script")]
    assert scripts and all(s.get("type") == "module" for s in soup.find_all("script"))
    assert any(src.endswith("/label.js") for src in scripts)
    preloads = [link["href"] for link in soup.find_all("link", rel="modulepreload")]
    pending = scripts + preloads
    seen: set[str] = set()
    while pending:  # follow the modules' own relative imports too
        src = pending.pop()
        if src in seen:
            continue
        seen.add(src)
        response = client.get(src)
        assert response.status_code == 200, src
        assert response.headers["content-type"].split(";")[0] in JS_TYPES, src
        base = src.rsplit("/", 1)[0]
        pending += [f"{base}/{m}" for m in re.findall(r'from\s+"\./([\w.-]+\.js)"', response.text)]
    assert {"/static/label.js", "/static/api.js", "/static/keymap.js"} <= seen
    css = soup.find("link", rel="stylesheet")["href"]
    response = client.get(css)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/css")
    assert "http://" not in response.text and "https://" not in response.text  # no CDN, no fonts


def test_shortcuts_are_advertised_and_listed_in_the_help(client):
    _project(client)
    _response, soup = _page(client)
    buttons = soup.select("#labels button.label-button")
    assert [b.select_one(".label-name").get_text() for b in buttons] == ["a", "b", "c"]
    assert [b["aria-keyshortcuts"] for b in buttons] == ["1", "2", "3"]
    assert [b.kbd.get_text() for b in buttons] == ["1", "2", "3"]
    assert soup.select_one("#skip")["aria-keyshortcuts"] == "S"
    assert "Enter" in soup.select_one("#accept")["aria-keyshortcuts"]
    status = soup.select_one("#status")
    assert status["role"] == "status" and status["aria-live"] == "polite"

    dialog = soup.select_one("dialog#help")
    assert dialog is not None and "Keyboard shortcuts" in dialog.get_text()
    keys = [k.get_text() for k in dialog.find_all("kbd")]
    assert {"1", "2", "3", "Enter", "a", "s", "?", "Esc"} <= set(keys)
    assert soup.select_one("#help-button")["aria-controls"] == "help"
    keymap = KEYMAP_JS.read_text()
    for key in ("Enter", "a", "s", "?", "Escape"):  # the help matches the JS keymap
        assert re.search(rf'(^|[\s{{,])"?{re.escape(key)}"?\s*:', keymap, re.M), key


def test_label_keys_stop_at_ten_and_multilabel_buttons_toggle(client):
    labels = [f"l{i}" for i in range(12)]
    _project(client, name="many", labels=labels, task="multilabel")
    _response, soup = _page(client)
    buttons = soup.select("#labels button.label-button")
    assert len(buttons) == 12
    assert [b.get("aria-keyshortcuts") for b in buttons] == [*"1234567890", None, None]
    assert all(b["aria-pressed"] == "false" for b in buttons)
    assert soup.find("main")["data-task"] == "multilabel"


def test_pool_and_project_data_is_never_rendered_unescaped(client):
    project = _project(client, name=IMG_PAYLOAD, labels=(PAYLOAD, "b"))
    _items(client, project["id"])
    response, soup = _page(client)
    assert PAYLOAD not in response.text and IMG_PAYLOAD not in response.text
    assert soup.find("img", src="x") is None
    assert [s.get("src") for s in soup.find_all("script")] == ["/static/label.js"]
    assert json.loads(soup.find("main")["data-labels"]) == [PAYLOAD, "b"]
    assert soup.select_one("option[selected]").get_text().startswith(IMG_PAYLOAD)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # The page's JS never turns data into HTML.
    static = KEYMAP_JS.parent
    for name in ("label.js", "api.js", "keymap.js"):
        source = (static / name).read_text()
        assert "innerHTML" not in source and "insertAdjacentHTML" not in source, name


REDUCER_CHECK = r"""
const src = require("fs").readFileSync(process.argv[1], "utf8");
import("data:text/javascript;base64," + Buffer.from(src).toString("base64")).then((m) => {
  const out = [];
  const entry = (id, suggestion = null) => ({ lease_id: `L${id}`, item: { id }, suggestion });
  let s = m.initialState({ labels: ["a", "b", "c"], task: "multiclass" });
  out.push(m.needsMore(s));
  const first = entry(1, { label: "c", confidence: 0.9 });
  s = m.reduce(s, { type: "loaded", items: [first, entry(2)] }).state;
  out.push(m.needsMore(s));
  let r = m.reduce(s, "label:1");
  out.push([r.effect.type, r.effect.entry.item.id, r.effect.labels, r.state.queue.length]);
  s = m.reduce(r.state, { type: "loaded", items: [entry(1), entry(2), entry(3)] }).state;
  out.push(s.queue.map((e) => e.item.id));
  out.push(m.reduce(s, "accept").effect);
  out.push(m.reduce(s, "label:7").effect);
  r = m.reduce(s, "skip");
  out.push([r.effect.type, r.state.queue.map((e) => e.item.id)]);
  out.push(m.reduce(s, "help").state.help);
  const key = (k, extra = {}) => m.actionFor({ key: k, target: { closest: () => null }, ...extra });
  const typing = { closest: (sel) => (sel.includes("input") ? {} : null) };
  out.push([key("1"), key("0"), key("Enter"), key("a"), key("s"), key("?"), key("x")]);
  const typed = m.actionFor({ key: "1", target: typing });
  out.push([typed, key("1", { ctrlKey: true }), key("1", { repeat: true })]);
  let ml = m.initialState({ labels: ["a", "b", "c"], task: "multilabel" });
  ml = m.reduce(ml, { type: "loaded", items: [entry(5, { label: "a", confidence: 0.6 })] }).state;
  out.push(m.reduce(ml, "accept").effect.labels);
  ml = m.reduce(m.reduce(ml, "label:2").state, "label:0").state;
  out.push([ml.selected, m.reduce(ml, "accept").effect.labels]);
  const soon = (id, at) => ({ ...entry(id), expires_at: new Date(at).toISOString() });
  let ex = m.initialState({ labels: ["a"], task: "binary" });
  ex = m.reduce(ex, { type: "loaded", items: [soon(7, 1000), soon(8, 60000)] }).state;
  out.push(m.reduce(ex, { type: "expire", now: 0 }).state.queue.map((e) => e.item.id));
  let u = m.reduce(m.reduce(s, "annotated").state, "annotated").state;
  const undo = m.reduce(u, "undo");
  u = m.reduce(undo.state, "undone").state;
  const fresh = m.initialState({ labels: ["a"], task: "binary" });
  out.push([key("u"), undo.effect, u.submitted, m.reduce(fresh, "undone").state.submitted]);
  console.log(JSON.stringify(out));
});
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_keymap_reducer_is_pure_and_correct():
    done = subprocess.run(
        ["node", "-e", REDUCER_CHECK, str(KEYMAP_JS)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out[0] is True and out[1] is False  # prefetch: ask until two items are in hand
    assert out[2] == ["annotate", 1, ["b"], 1]
    assert out[3] == [2, 3]  # a late /next repeating answered or held leases adds only new ones
    assert out[4] is None  # item 2 has no suggestion: nothing to accept
    assert out[5] is None  # no 8th label
    assert out[6] == ["skip", [3]]
    assert out[7] is True
    assert out[8] == ["label:0", "label:9", "accept", "accept", "skip", "help", None]
    assert out[9] == [None, None, None]  # typing, modifiers and key repeat are ignored
    assert out[10] == ["a"]
    assert out[11] == [[2, 0], ["a", "c"]]
    assert out[12] == [8]  # a lease about to run out is dropped before it is answered
    assert out[13] == ["undo", {"type": "undo"}, 1, 0]  # undo takes one label off the counter


def test_digit_labels_use_their_own_keys(client):
    """Labels "0".."9" are typed as themselves (press 3 for "3"), not by position."""
    labels = [str(i) for i in range(10)]
    body = {"name": "digits-keys", "labels": labels, "modality": "vector"}
    created = client.post("/api/v1/projects", json=body)
    page = BeautifulSoup(client.get(f"/?project={created.json()['id']}").text, "html.parser")
    keys = {b.select_one(".label-name").text: b["data-key"] for b in page.select(".label-button")}
    assert keys == {label: label for label in labels}


PAGES = ("label", "review", "verify", "dashboard")


def _follow_modules(client, soup):
    """Every module a page loads, following relative imports; returns the set of URLs."""
    pending = [s["src"] for s in soup.find_all("script")]
    seen: set[str] = set()
    while pending:
        src = pending.pop()
        if src in seen:
            continue
        seen.add(src)
        response = client.get(src)
        assert response.status_code == 200, src
        assert response.headers["content-type"].split(";")[0] in JS_TYPES, src
        base = src.rsplit("/", 1)[0]
        pending += [f"{base}/{m}" for m in re.findall(r'from\s+"\./([\w.-]+\.js)"', response.text)]
    return seen


@pytest.mark.parametrize(
    ("page", "module"),
    [("label", "label.js"), ("review", "review.js"), ("verify", "verify.js"),
     ("dashboard", "dashboard.js")],
)
def test_project_pages_render_their_shell_nav_and_help(client, page, module):
    project = _project(client)
    pid = project["id"]
    _response, soup = _page(client, f"/projects/{pid}/{page}")
    main = soup.find("main")
    assert main["data-project-id"] == str(pid) and main["data-api-base"] == API
    assert soup.select_one(".skip-link")["href"] == f"#{main['id']}"
    nav = {a.get_text(): a["href"] for a in soup.select("nav.nav a")}
    assert nav == {"Projects": "/projects", "Label": f"/projects/{pid}/label",
                   "Review": f"/projects/{pid}/review", "Verify": f"/projects/{pid}/verify",
                   "Dashboard": f"/projects/{pid}/dashboard"}
    assert soup.select_one("nav.nav a[aria-current=page]").get_text().lower() == page
    dialog = soup.select_one("dialog#help")
    assert soup.select_one("#help-button")["aria-controls"] == "help"
    keys = {k.get_text() for k in dialog.find_all("kbd")}
    assert {"?", "Esc"} <= keys
    assert soup.select_one("#annotator")["autocomplete"] == "username"
    assert f"/static/{module}" in _follow_modules(client, soup)
    assert "/static/common.js" in _follow_modules(client, soup)


def test_review_page_lists_filters_and_row_keys(client):
    project = _project(client, labels=("a", "b", "c"))
    _response, soup = _page(client, f"/projects/{project['id']}/review")
    form = soup.select_one("form#filters")
    assert form["method"] == "get"  # filters live in the URL
    assert [o["value"] for o in form.select("select[name=label] option")] == ["", "a", "b", "c"]
    assert [o["value"] for o in form.select("select[name=source] option")] == [
        "", "human", "pseudo", "imported"]
    assert [o["value"] for o in form.select("select[name=disagreement] option")] == [
        "", "true", "false"]
    assert form.select_one("input[name=annotator]") is not None
    assert [k.get_text() for k in soup.select("#row-keys kbd")] == ["1", "2", "3"]
    help_keys = {k.get_text() for k in soup.select("dialog#help kbd")}
    assert {"1", "2", "3", "j", "k", "/", "m", "?"} <= help_keys


def test_dashboard_page_has_a_place_for_every_panel(client):
    project = _project(client)
    _response, soup = _page(client, f"/projects/{project['id']}/dashboard")
    for node in ("labels-over-time", "learning-curve", "class-balance", "jobs", "annotators",
                 "agreement-pairs", "count-labeled"):
        assert soup.find(id=node) is not None, node
    assert soup.select_one("#labels-over-time")["role"] == "img"
    assert "r" in {k.get_text() for k in soup.select("dialog#help kbd")}


def test_projects_page_lists_projects_with_create_and_import_forms(client):
    empty = _page(client, "/projects")[1]
    assert empty.select_one("#project-list-empty") is not None
    assert empty.select_one("#import-form button[type=submit]").has_attr("disabled")
    project = _project(client, name="listed")
    _items(client, project["id"], n=3)
    _response, soup = _page(client, "/projects")
    row = soup.select_one(f"tr[data-project-id='{project['id']}']")
    cells = [td.get_text(strip=True) for td in row.find_all("td")]
    assert row.th.a["href"] == f"/projects/{project['id']}/label"
    assert cells[:5] == ["multiclass", "vector", "3", "0", "0"]
    assert {a.get_text() for a in row.select("td.links a")} == {"Review", "Verify", "Dashboard"}
    form = soup.select_one("#create-form")
    assert {f["name"] for f in form.select("input, select, textarea")} == {
        "name", "task", "labels", "modality"}
    assert soup.select_one("#import-project option")["value"] == str(project["id"])
    assert soup.select_one("#import-file")["type"] == "file"
    assert soup.select_one("progress#import-progress") is not None
    assert {"c", "i", "?"} <= {k.get_text() for k in soup.select("dialog#help kbd")}
    assert soup.find("script", src="/static/projects.js") is not None


@pytest.mark.parametrize("page", PAGES)
def test_unknown_project_pages_are_404(client, page):
    response = client.get(f"/projects/999999/{page}")
    assert response.status_code == 404 and "Not found" in response.text


@pytest.mark.parametrize("url", ["/projects", *(f"/projects/{{pid}}/{p}" for p in PAGES)])
def test_every_page_escapes_project_data(client, url):
    project = _project(client, name=IMG_PAYLOAD, labels=(PAYLOAD, "b"))
    _items(client, project["id"])
    response, soup = _page(client, url.format(pid=project["id"]))
    assert PAYLOAD not in response.text and IMG_PAYLOAD not in response.text
    assert soup.find("img", src="x") is None
    assert all(s.get("src", "").startswith("/static/") for s in soup.find_all("script"))
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert IMG_PAYLOAD in soup.get_text()  # shown as text


def test_no_module_turns_data_into_html():
    for path in sorted(KEYMAP_JS.parent.glob("*.js")):
        source = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, (path.name, sink)
