// The projects page: create a project, import a file with a progress bar (upload, then the
// import job's progress when the server queues it), then reload to list the new counts.

import { ApiError, createApi, csrfToken, problemField, problemMessage } from "./api.js";
import { bindKeys, say } from "./common.js";

const root = document.getElementById("content");
const base = root.dataset.apiBase;
const api = createApi(base);
const $ = (id) => document.getElementById(id);
const POLL_MS = 500;

function showError(box, err) {
  const field = problemField(err);
  box.textContent = problemMessage(err);
  box.hidden = false;
  const input = field && document.querySelector(`[name="${CSS.escape(field)}"]`);
  if (input) input.focus();
}

$("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("create-error").hidden = true;
  const labels = form.labels.value.split(/[\n,]/).map((x) => x.trim()).filter(Boolean);
  const body = { name: form.name.value.trim(), task: form.task.value, labels, modality: form.modality.value };
  try {
    const created = await api.createProject(body);
    say(`Created project ${created.name}.`);
    window.location.assign(`${root.dataset.root}/projects?created=${created.id}`);
  } catch (err) {
    showError($("create-error"), err);
  }
});

/** POST a multipart file with upload progress; resolves { status, data } or rejects ApiError. */
function upload(url, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("Accept", "application/json");
    if (csrfToken()) xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.upload.addEventListener("progress", (e) => e.lengthComputable && onProgress(e.loaded / e.total));
    xhr.addEventListener("error", () => reject(new ApiError({ detail: "Network error", code: "network_error" }, 0)));
    xhr.addEventListener("load", () => {
      let data = {};
      try {
        data = JSON.parse(xhr.responseText || "{}");
      } catch {
        data = {};
      }
      if (xhr.status >= 400) reject(new ApiError({ detail: `HTTP ${xhr.status}`, ...data }, xhr.status));
      else resolve({ status: xhr.status, data });
    });
    xhr.send(formData);
  });
}

function progress(fraction, text) {
  $("import-progress-row").hidden = false;
  $("import-progress").value = Math.max(0, Math.min(1, fraction));
  $("import-progress-text").textContent = text;
}

async function waitForJob(jobId) {
  for (;;) {
    const job = await api.job(jobId);
    const pct = Math.round(100 * job.progress);
    progress(job.progress, `Embedding and storing: ${pct}%${job.message ? ` · ${job.message}` : ""}`);
    if (job.status === "succeeded") return job;
    if (job.status === "failed" || job.status === "cancelled") {
      throw new ApiError({ detail: `import job ${job.status}: ${job.error ?? ""}`.trim() }, 500);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

$("import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("import-error").hidden = true;
  const file = form.file.files[0];
  if (!file) return showError($("import-error"), { problem: { errors: [{ loc: ["file"], msg: "choose a file" }] } });
  const data = new FormData();
  data.append("file", file);
  const params = form.ignore_labels.checked ? "?ignore_labels=true" : "";
  const url = `${base}/projects/${encodeURIComponent(form.project.value)}/items${params}`;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    progress(0, "Uploading…");
    const answer = await upload(url, data, (f) => progress(f, `Uploading: ${Math.round(100 * f)}%`));
    let imported = answer.data.imported;
    if (answer.status === 202) imported = (await waitForJob(answer.data.job_id)).metrics?.imported;
    progress(1, `Imported ${imported ?? "all"} items.`);
    say(`Imported ${imported ?? "all"} items from ${file.name}.`);
    setTimeout(() => window.location.reload(), 800);
  } catch (err) {
    $("import-progress-row").hidden = true;
    showError($("import-error"), err);
  } finally {
    button.disabled = false;
  }
});

const created = new URLSearchParams(window.location.search).get("created");
if (created) {
  const row = document.querySelector(`tr[data-project-id="${CSS.escape(created)}"]`);
  row?.classList.add("fresh");
  $("import-project").value = created;
  say("Project created: import a file into it below.");
}

bindKeys({
  c: () => $("create-name").focus(),
  i: () => $("import-file").focus(),
});
