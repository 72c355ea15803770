// Calls to the medmesh REST API. Every error is JSON {"error": {status, reason}}.

export class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

/** Sends a request; answers the parsed JSON (null for 204), throws ApiError. */
export async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const reason = data && data.error ? data.error.reason : `${method} ${path}: HTTP ${res.status}`;
    if (res.status === 401) window.dispatchEvent(new CustomEvent("medmesh:signed-out"));
    throw new ApiError(res.status, reason);
  }
  return data;
}

export const enc = encodeURIComponent;
