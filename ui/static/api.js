// The JSON API client: the page's only backend. Errors arrive as problem+json and are
// thrown as ApiError so the page can show `detail` and branch on `code`.

export class ApiError extends Error {
  constructor(problem, status) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = problem.code || `http_${status}`;
    this.detail = this.message;
    this.problem = problem;
  }
}

/** A random UUID; crypto.randomUUID needs a secure context, getRandomValues does not. */
export function uuid() {
  if (globalThis.crypto?.randomUUID) {
    try {
      return crypto.randomUUID();
    } catch {
      // insecure context: fall through
    }
  }
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
}

const RETRYABLE = new Set([502, 503, 504]);

/** The session's CSRF token (base.html's meta tag); sent as X-CSRF-Token on unsafe methods. */
export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

async function request(url, { method = "GET", body, headers = {}, retries = 0 } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (!["GET", "HEAD", "OPTIONS"].includes(method.toUpperCase()) && csrfToken()) {
    init.headers["X-CSRF-Token"] = csrfToken();
  }
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    if (retries > 0) return request(url, { method, body, headers, retries: retries - 1 });
    throw new ApiError({ detail: `Network error: ${err.message}`, code: "network_error" }, 0);
  }
  if (RETRYABLE.has(response.status) && retries > 0) {
    return request(url, { method, body, headers, retries: retries - 1 });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const problem = data && typeof data === "object" ? data : {};
    if (!problem.detail) problem.detail = `${response.status} ${response.statusText}`.trim();
    throw new ApiError(problem, response.status);
  }
  return data;
}

/** Endpoints the pages use, bound to an API base such as "/api/v1". */
export function createApi(base) {
  const project = (pid) => `${base}/projects/${encodeURIComponent(pid)}`;
  const query = (params) => {
    const kept = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
    return kept.length ? `?${new URLSearchParams(kept)}` : "";
  };
  const post = (url, body, headers = {}) => request(url, { method: "POST", body, headers });
  return {
    projects: () => request(`${base}/projects`),
    createProject: (body) => post(`${base}/projects`, body),
    project: (pid) => request(project(pid)),
    next: (pid, annotator, n = 2) => request(`${project(pid)}/next${query({ annotator, n })}`),
    // The same Idempotency-Key on a retry returns the first annotation instead of a second.
    annotate: (pid, body, idempotencyKey = uuid()) =>
      request(`${project(pid)}/annotations`, {
        method: "POST",
        body,
        headers: { "Idempotency-Key": idempotencyKey },
        retries: 1,
      }),
    skip: (pid, leaseId) => post(`${project(pid)}/leases/${encodeURIComponent(leaseId)}/skip`),
    undo: (pid, annotationId, annotator) =>
      post(`${project(pid)}/annotations/${encodeURIComponent(annotationId)}/undo`, {
        annotator,
        relet: true,
      }),
    review: (pid, filters) => request(`${project(pid)}/annotations${query(filters)}`),
    relabel: (pid, annotationId, body, idempotencyKey = uuid()) =>
      post(`${project(pid)}/annotations/${encodeURIComponent(annotationId)}/relabel`, body, {
        "Idempotency-Key": idempotencyKey,
      }),
    item: (pid, itemId) => request(`${project(pid)}/items/${encodeURIComponent(itemId)}`),
    dashboard: (pid) => request(`${project(pid)}/dashboard`),
    job: (jobId) => request(`${base}/jobs/${encodeURIComponent(jobId)}`),
    verifyNext: (pid, annotator) =>
      request(`${project(pid)}/negatives/verify/next${query({ annotator, n: 1 })}`),
    verdict: (pid, tripletId, body) =>
      post(`${project(pid)}/negatives/${encodeURIComponent(tripletId)}/verdict`, body),
    pseudoNext: (pid, annotator) =>
      request(`${project(pid)}/pseudo-labels/verify/next${query({ annotator, n: 1 })}`),
    pseudoVerdict: (pid, reviewId, body) =>
      post(`${project(pid)}/pseudo-labels/${encodeURIComponent(reviewId)}/verdict`, body),
  };
}

/** The first field an API problem names (``errors[0].loc`` without "body"/"query"), or null. */
export function problemField(err) {
  const loc = err?.problem?.errors?.[0]?.loc;
  if (!Array.isArray(loc)) return err?.problem?.context?.field ?? null;
  const parts = loc.filter((part) => !["body", "query", "path"].includes(part));
  return parts.length ? String(parts[0]) : null;
}

/** A readable message for an API error: each named field with its message (up to three),
 * else the problem's detail. */
export function problemMessage(err) {
  const errors = err?.problem?.errors;
  if (!Array.isArray(errors) || !errors.length) return err?.detail ?? String(err);
  const parts = errors.slice(0, 3).map((e) => {
    const loc = (e.loc ?? []).filter((part) => !["body", "query", "path"].includes(part));
    const msg = String(e.msg ?? "").replace(/^Value error, /, "");
    return loc.length ? `${loc.join(".")}: ${msg}` : msg;
  });
  const more = errors.length > 3 ? ` (and ${errors.length - 3} more)` : "";
  return parts.join(" · ") + more;
}
