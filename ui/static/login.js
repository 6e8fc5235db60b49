// /login#key=<key>: the fragment never reaches the server (nor its logs); post it as the
// login form's API key, then drop it from the address bar and history.
const form = document.getElementById("login-form");
const match = /(?:^#|&)key=([^&]+)/.exec(window.location.hash);
if (form && match) {
  history.replaceState(null, "", window.location.pathname + window.location.search);
  document.getElementById("login-key").value = decodeURIComponent(match[1]);
  document.getElementById("status").textContent = "Logging in…";
  form.submit();
}
