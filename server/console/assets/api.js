// The console's client of corsd's JSON/HTTP API (the Connect protocol, on
// the console's own origin). The token is sent in the Authorization header
// only; the page keeps it in sessionStorage, never in a cookie or a URL.

const TOKEN_KEY = "corsd.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// APIError is a failed call: code is the Connect code ("invalid_argument",
// "aborted", ...), violations the BadRequest field violations.
export class APIError extends Error {
  constructor(code, message, violations = []) {
    super(message);
    this.code = code;
    this.violations = violations;
  }
}

function headers(contentType) {
  const h = { "Content-Type": contentType, "Connect-Protocol-Version": "1" };
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

function toError(body, status) {
  const code = (body && body.code) || (status === 0 ? "unavailable" : "unknown");
  const violations = [];
  for (const d of (body && body.details) || []) {
    if (d.type === "google.rpc.BadRequest" && d.debug) {
      for (const v of d.debug.fieldViolations || []) violations.push({ field: v.field, description: v.description });
    }
  }
  return new APIError(code, (body && body.message) || `HTTP ${status}`, violations);
}

// call makes a unary call such as call("PolicyService", "ListPolicies", {}).
export async function call(service, method, req) {
  let resp;
  try {
    resp = await fetch(`../corsd.v1.${service}/${method}`, {
      method: "POST",
      headers: headers("application/json"),
      body: JSON.stringify(req || {}),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    throw new APIError("unavailable", "corsd cannot be reached: " + e.message);
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // not JSON: a proxy's error page
  }
  if (!resp.ok) {
    const err = toError(body, resp.status);
    // A token revoked or rotated while the page is open: sign in again.
    if (err.code === "unauthenticated" && token()) window.dispatchEvent(new CustomEvent("corsd:unauthenticated", { detail: err.message }));
    throw err;
  }
  return body;
}

// watch runs a server stream (the Connect streaming protocol: messages in
// 5-byte-prefixed envelopes) and calls onMessage for each message. It
// resolves when the stream ends cleanly and rejects with an APIError.
export async function watch(service, method, req, onMessage, signal) {
  const json = new TextEncoder().encode(JSON.stringify(req || {}));
  const env = new Uint8Array(5 + json.length);
  new DataView(env.buffer).setUint32(1, json.length);
  env.set(json, 5);
  let resp;
  try {
    resp = await fetch(`../corsd.v1.${service}/${method}`, {
      method: "POST",
      headers: headers("application/connect+json"),
      body: env,
      credentials: "omit",
      cache: "no-store",
      signal,
    });
  } catch (e) {
    throw new APIError("unavailable", "corsd cannot be reached: " + e.message);
  }
  if (!resp.ok) {
    let body = null;
    try {
      body = await resp.json();
    } catch {
      // not JSON
    }
    throw toError(body, resp.status);
  }
  const reader = resp.body.getReader();
  let buf = new Uint8Array(0);
  const dec = new TextDecoder();
  for (;;) {
    let r;
    try {
      r = await reader.read();
    } catch (e) {
      throw new APIError("unavailable", "the stream broke: " + e.message);
    }
    if (r.done) throw new APIError("unavailable", "the stream ended without its end message");
    const next = new Uint8Array(buf.length + r.value.length);
    next.set(buf);
    next.set(r.value, buf.length);
    buf = next;
    while (buf.length >= 5) {
      const flags = buf[0];
      const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
      if (buf.length < 5 + len) break;
      const msg = JSON.parse(dec.decode(buf.subarray(5, 5 + len)));
      buf = buf.slice(5 + len);
      if (flags & 2) {
        if (msg.error) throw toError(msg.error, 200);
        return;
      }
      onMessage(msg);
    }
  }
}
