// corsd's web console: policies, trusted origins, audit log, request tester,
// following changes live. Plain ES modules; every text from the API goes
// into the page through textContent, never as HTML.
import * as api from "./api.js";
import { diff, show, ruleText } from "./diff.js";

const main = document.getElementById("main");
const who = document.getElementById("who");
const liveEl = document.getElementById("live");
const signOutBtn = document.getElementById("signout");

const state = {
  signedIn: false,
  canWrite: false,
  policies: new Map(), // name -> policy
  rev: 0, // highest revision seen
  current: null, // the policy shown
  dirty: false, // a form of the policy page holds unsaved input
  notice: null, // {text, kind, reload}
  live: null, // AbortController of the watch
  liveMode: "",
  filter: "",
  refreshList: null, // refills the list page's table
};

// h builds an element: h("a", {href: "#/"}, "text", child...).
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function field(id, label, input, hint) {
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", { id: id + "-hint" }, hint) : null);
}

function id(name) {
  return name.replace(/^policies\//, "");
}

function hhmm(ts) {
  if (!ts) return "?";
  const d = new Date(ts);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
}

function when(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return d.toLocaleString([], { hour12: false });
}

const KIND = { CHANGE_KIND_CREATE: "created", CHANGE_KIND_UPDATE: "updated", CHANGE_KIND_DELETE: "deleted" };

// ---- sign-in -------------------------------------------------------------

async function boot() {
  signOutBtn.addEventListener("click", () => signOut(""));
  window.addEventListener("corsd:unauthenticated", () => {
    if (state.signedIn) signOut("Your token is no longer accepted; sign in again.");
  });
  window.addEventListener("hashchange", () => render());
  try {
    await loadPolicies();
    await signedIn();
  } catch (e) {
    if (e.code === "unauthenticated" || e.code === "permission_denied") renderSignIn(api.token() ? e.message : "");
    else renderSignIn(e.message);
  }
}

async function signedIn() {
  state.signedIn = true;
  // A write scope is probed with a call that stores nothing.
  try {
    await api.call("PolicyService", "CreatePolicy", { policyId: "console-write-probe", validateOnly: true, policy: {} });
    state.canWrite = true;
  } catch (e) {
    state.canWrite = !(e.code === "permission_denied" || e.code === "unauthenticated");
  }
  who.textContent = (api.token() ? "Signed in" : "No token needed (loopback)") + (state.canWrite ? " · read and write" : " · read-only");
  signOutBtn.hidden = !api.token();
  startLive();
  render();
}

function signOut(message) {
  api.setToken("");
  if (state.live) state.live.abort();
  state.signedIn = false;
  state.canWrite = false;
  state.policies.clear();
  who.textContent = "";
  liveEl.textContent = "";
  signOutBtn.hidden = true;
  renderSignIn(message);
}

function renderSignIn(error) {
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-hint" });
  const err = h("p", { id: "signin-error", class: "error", role: "alert" }, error || "");
  const form = h(
    "form",
    {
      id: "signin",
      onsubmit: async (ev) => {
        ev.preventDefault();
        api.setToken(input.value.trim());
        err.textContent = "";
        try {
          await loadPolicies();
          await signedIn();
        } catch (e) {
          api.setToken("");
          err.textContent = e.code === "unauthenticated" ? "This token is not valid." : e.message;
        }
      },
    },
    h("h2", {}, "Sign in"),
    field("token", "Bearer token", input, "Kept in this tab only (sessionStorage); never sent in a URL or a cookie."),
    h("button", { type: "submit" }, "Sign in"),
    err,
  );
  main.replaceChildren(form);
  input.focus();
}

// ---- data ----------------------------------------------------------------

async function loadPolicies() {
  const all = new Map();
  let pageToken = "";
  for (let i = 0; i < 100; i++) {
    const r = await api.call("PolicyService", "ListPolicies", { pageSize: 1000, pageToken });
    for (const p of r.policies || []) {
      all.set(p.name, p);
      state.rev = Math.max(state.rev, Number(p.revision || 0));
    }
    pageToken = r.nextPageToken || "";
    if (!pageToken) break;
  }
  state.policies = all;
}

// lastChange returns the latest change of name at or after revision rev.
async function lastChange(name, rev) {
  const r = await api.call("PolicyService", "ListChanges", { policy: name, startRevision: String(Math.max(0, rev - 1)), pageSize: 1000 });
  const cs = r.changes || [];
  return cs.length ? cs[cs.length - 1] : null;
}

// ---- live ----------------------------------------------------------------

function setLive(text) {
  liveEl.textContent = text;
}

function startLive() {
  if (state.live) state.live.abort();
  const ctl = new AbortController();
  state.live = ctl;
  const loop = async () => {
    let delay = 500;
    while (!ctl.signal.aborted) {
      try {
        setLive("Live");
        state.liveMode = "stream";
        await api.watch("DecisionService", "WatchPolicies", { startRevision: String(state.rev) }, onEvent, ctl.signal);
      } catch (e) {
        if (ctl.signal.aborted) return;
        if (e.code === "permission_denied" || e.code === "unauthenticated" || e.code === "unimplemented") {
          // The token may not watch (no `check` scope under decision auth):
          // follow the audit log instead.
          return poll(ctl);
        }
        if (e.code === "out_of_range") {
          await loadPolicies().catch(() => {});
          render();
        }
        setLive("Reconnecting…");
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  };
  loop();
}

async function poll(ctl) {
  state.liveMode = "poll";
  while (!ctl.signal.aborted) {
    try {
      const r = await api.call("PolicyService", "ListChanges", { startRevision: String(state.rev), pageSize: 1000 });
      setLive("Live (polling)");
      for (const c of r.changes || []) {
        const rev = Number(c.revision);
        if (c.after) onEvent({ type: "WATCH_EVENT_TYPE_PUT", name: c.name, revision: c.revision, policy: c.after });
        else onEvent({ type: "WATCH_EVENT_TYPE_DELETE", name: c.name, revision: c.revision });
        state.rev = Math.max(state.rev, rev);
      }
    } catch {
      setLive("Reconnecting…");
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function onEvent(ev) {
  const rev = Number(ev.revision || 0);
  switch (ev.type) {
    case "WATCH_EVENT_TYPE_SNAPSHOT":
      state.policies.set(ev.name, ev.policy);
      break;
    case "WATCH_EVENT_TYPE_SYNCED":
    case "WATCH_EVENT_TYPE_PROGRESS":
      state.rev = Math.max(state.rev, rev);
      break;
    case "WATCH_EVENT_TYPE_PUT":
    case "WATCH_EVENT_TYPE_DELETE": {
      state.rev = Math.max(state.rev, rev);
      const prev = state.policies.get(ev.name);
      if (prev && Number(prev.revision) >= rev && ev.type === "WATCH_EVENT_TYPE_PUT") return; // our own write, applied already
      if (ev.type === "WATCH_EVENT_TYPE_PUT") state.policies.set(ev.name, ev.policy);
      else state.policies.delete(ev.name);
      changedElsewhere(ev.name, rev, ev.type === "WATCH_EVENT_TYPE_DELETE" ? null : ev.policy);
      break;
    }
  }
}

// changedElsewhere shows a change that this page did not make.
async function changedElsewhere(name, rev, policy) {
  const cur = state.current;
  if (!cur || cur.name !== name) {
    if (route().page === "list" && state.refreshList) state.refreshList();
    return;
  }
  let by = "someone";
  let at = "";
  try {
    const c = await lastChange(name, rev);
    if (c) {
      by = c.actor || by;
      at = hhmm(c.changeTime);
    }
  } catch {
    // the notice names no actor
  }
  if (state.current !== cur) return;
  if (!policy) {
    state.notice = { kind: "warn", text: `This policy was deleted by ${by}${at ? " at " + at : ""}.` };
    renderNotice();
    return;
  }
  if (state.dirty) {
    // Keep the user's input and the etag it is based on: saving it would
    // be refused as stale, and says so.
    state.notice = { kind: "warn", reload: true, text: `Changed by ${by} at ${at} (revision ${rev}) while you were editing; reload to see it.` };
    renderNotice();
    return;
  }
  state.current = policy;
  state.notice = { kind: "info", text: `Updated live: changed by ${by} at ${at} (revision ${rev}).` };
  renderPolicy();
}

// ---- routing ---------------------------------------------------------------

function route() {
  const m = location.hash.match(/^#\/policies\/([a-z][a-z0-9-]{0,62})$/);
  if (m) return { page: "policy", name: "policies/" + m[1] };
  return { page: "list" };
}

function render() {
  if (!state.signedIn) return;
  const r = route();
  state.refreshList = null;
  if (r.page === "policy") openPolicy(r.name);
  else {
    state.current = null;
    renderList();
  }
}

// ---- list ------------------------------------------------------------------

function renderList() {
  const search = h("input", {
    id: "search",
    type: "search",
    value: state.filter,
    placeholder: "name, description or origin",
    oninput: (ev) => {
      state.filter = ev.target.value;
      fill();
    },
  });
  const tbody = h("tbody");
  const count = h("p", { id: "count", role: "status" });
  const fill = () => {
    const q = state.filter.trim().toLowerCase();
    const rows = [...state.policies.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .filter((p) => !q || [p.name, p.description || "", ...(p.origins || []).map((o) => o.pattern)].some((s) => s.toLowerCase().includes(q)));
    tbody.replaceChildren(
      ...rows.map((p) =>
        h(
          "tr",
          { "data-name": p.name },
          h("td", {}, h("a", { href: "#/" + p.name }, id(p.name))),
          h("td", {}, p.description || ""),
          h("td", {}, String((p.origins || []).length)),
          h("td", {}, show(p.mode)),
        ),
      ),
    );
    count.textContent = `${rows.length} of ${state.policies.size} policies`;
  };
  fill();
  state.refreshList = fill;
  const kids = [
    h("h2", { tabindex: "-1" }, "Policies"),
    field("search", "Search policies", search),
    count,
    h("div", { class: "scroll" }, h("table", { id: "policies" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Policy"), h("th", { scope: "col" }, "Description"), h("th", { scope: "col" }, "Origins"), h("th", { scope: "col" }, "Mode"))), tbody)),
  ];
  if (state.canWrite) kids.push(newPolicyForm());
  main.replaceChildren(...kids.filter(Boolean));
}

function newPolicyForm() {
  const input = h("input", { id: "new-id", required: true, pattern: "[a-z][a-z0-9-]{0,62}", "aria-describedby": "new-id-hint" });
  const err = h("div", { id: "new-error", class: "error", role: "alert" });
  return h(
    "form",
    {
      id: "new-policy",
      onsubmit: async (ev) => {
        ev.preventDefault();
        err.replaceChildren();
        try {
          const r = await api.call("PolicyService", "CreatePolicy", { policyId: input.value.trim(), policy: {} });
          state.policies.set(r.policy.name, r.policy);
          location.hash = "#/" + r.policy.name;
        } catch (e) {
          showError(err, e);
        }
      },
    },
    h("h3", {}, "New policy"),
    field("new-id", "Policy id", input, "Lower-case letters, digits and dashes, starting with a letter."),
    h("button", { type: "submit" }, "Create policy"),
    err,
  );
}

// ---- policy page -------------------------------------------------------------

async function openPolicy(name) {
  if (!state.current || state.current.name !== name) {
    state.notice = null;
    state.dirty = false;
  }
  try {
    const r = await api.call("PolicyService", "GetPolicy", { name });
    state.current = r.policy;
    state.policies.set(name, r.policy);
  } catch (e) {
    main.replaceChildren(h("h2", {}, id(name)), h("p", { class: "error", role: "alert" }, e.message), h("p", {}, h("a", { href: "#/" }, "All policies")));
    return;
  }
  renderPolicy();
}

function renderNotice() {
  const el = document.getElementById("notice");
  if (!el) return;
  const n = state.notice;
  el.className = n ? "notice " + n.kind : "notice";
  el.replaceChildren();
  if (!n) return;
  el.append(h("span", {}, n.text));
  if (n.reload) el.append(" ", h("button", { type: "button", id: "reload", onclick: () => reloadPolicy() }, "Reload"));
}

async function reloadPolicy() {
  state.dirty = false;
  state.notice = null;
  const name = state.current.name;
  state.current = null;
  await openPolicy(name);
}

function renderPolicy() {
  const p = state.current;
  state.dirty = false;
  const ro = !state.canWrite;
  const kids = [
    h("p", {}, h("a", { href: "#/" }, "← All policies")),
    h("h2", { tabindex: "-1", id: "policy-title" }, id(p.name)),
    p.description ? h("p", {}, p.description) : null,
    h("p", { class: "meta" }, `Mode ${show(p.mode)} · revision ${p.revision} · updated ${when(p.updateTime)}`),
    h("div", { id: "notice", class: "notice", role: "status", "aria-live": "polite" }),
    ro ? h("p", { id: "readonly", class: "notice info" }, "Read-only: your token may look but not change policies.") : null,
    originsSection(p, ro),
    settingsSection(p, ro),
    testSection(p),
    auditSection(p),
  ];
  main.replaceChildren(...kids.filter(Boolean));
  renderNotice();
  loadAudit(p.name);
}

function markDirty() {
  state.dirty = true;
}

// stale explains an ABORTED write: who changed the policy, and when.
async function stale(errEl) {
  const p = state.current;
  let by = "someone";
  let at = "?";
  let rev = "";
  try {
    const r = await api.call("PolicyService", "GetPolicy", { name: p.name });
    const c = await lastChange(p.name, Number(r.policy.revision));
    if (c) {
      by = c.actor || by;
      at = hhmm(c.changeTime);
      rev = ` (revision ${c.revision})`;
    }
  } catch {
    // explained without an actor
  }
  errEl.replaceChildren(
    h("p", { class: "stale" }, `Not saved: changed by ${by} at ${at}${rev} since you loaded this page; reload, then make your change again.`),
    h("button", { type: "button", id: "stale-reload", onclick: () => reloadPolicy() }, "Reload"),
  );
}

function showError(errEl, e) {
  errEl.replaceChildren();
  if (e.violations && e.violations.length) {
    errEl.append(h("p", {}, "Refused:"));
    errEl.append(h("ul", {}, e.violations.map((v) => h("li", { "data-field": v.field }, h("strong", {}, fieldLabel(v.field) + ": "), v.description))));
  } else {
    errEl.append(h("p", {}, e.message));
  }
}

const LABELS = {
  "origin.pattern": "Pattern",
  "origin.allow_credentials": "Credentials",
  "origin.description": "Description",
  "policy.allowed_methods": "Allowed methods",
  "policy.allowed_request_headers": "Allowed request headers",
  "policy.exposed_response_headers": "Exposed response headers",
  "policy.max_age": "Max age",
  "policy.mode": "Mode",
  policy_id: "Policy id",
};

function fieldLabel(f) {
  const base = f.replace(/\[\d+\]/g, "");
  return LABELS[base] || LABELS[base.split(".").slice(0, 2).join(".")] || f;
}

function markInvalid(form, e, map) {
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const v of e.violations || []) {
    for (const [prefix, inputId] of map) {
      if (v.field.startsWith(prefix)) form.querySelector("#" + inputId)?.setAttribute("aria-invalid", "true");
    }
  }
}

function originsSection(p, ro) {
  const rows = (p.origins || []).map((o) => {
    const cell = h("td", {});
    if (!ro) {
      const remove = h("button", { type: "button", class: "remove", "data-pattern": o.pattern, "aria-label": `Remove ${o.pattern}` }, "Remove");
      remove.addEventListener("click", () => confirmRemove(cell, o.pattern));
      cell.append(remove);
    }
    return h("tr", { "data-pattern": o.pattern }, h("td", {}, h("code", {}, o.pattern)), h("td", {}, o.allowCredentials ? "yes" : "no"), h("td", {}, o.description || ""), ro ? null : cell);
  });
  const table = h(
    "table",
    { id: "origins" },
    h("caption", {}, "Trusted origins"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Pattern"), h("th", { scope: "col" }, "Credentials"), h("th", { scope: "col" }, "Description"), ro ? null : h("th", { scope: "col" }, h("span", { class: "sr" }, "Actions")))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: ro ? 3 : 4 }, "No trusted origin: every cross-origin read is refused."))),
  );
  return h("section", { "aria-labelledby": "origins-h" }, h("h3", { id: "origins-h" }, "Trusted origins"), h("div", { class: "scroll" }, table), ro ? null : addOriginForm(p));
}

function confirmRemove(cell, pattern) {
  const err = h("div", { class: "error", role: "alert" });
  const yes = h("button", { type: "button", id: "confirm-remove", class: "danger" }, `Remove ${pattern}`);
  const no = h("button", { type: "button", id: "cancel-remove" }, "Cancel");
  const prev = [...cell.childNodes];
  yes.addEventListener("click", async () => {
    try {
      const r = await api.call("PolicyService", "RemoveOrigin", { policy: state.current.name, pattern, etag: state.current.etag });
      applyWrite(r.policy);
    } catch (e) {
      if (e.code === "aborted") stale(err);
      else showError(err, e);
    }
  });
  no.addEventListener("click", () => cell.replaceChildren(...prev));
  cell.replaceChildren(h("span", { role: "alert" }, "Really remove? "), yes, " ", no, err);
  no.focus();
}

// applyWrite shows the policy that our own write stored.
function applyWrite(p) {
  state.policies.set(p.name, p);
  state.rev = Math.max(state.rev, Number(p.revision));
  state.current = p;
  state.notice = { kind: "ok", text: `Saved (revision ${p.revision}).` };
  renderPolicy();
}

function addOriginForm(p) {
  const pattern = h("input", { id: "add-pattern", required: true, placeholder: "https://app.example.com", "aria-describedby": "add-pattern-hint", oninput: markDirty });
  const cred = h("input", { id: "add-credentials", type: "checkbox", onchange: markDirty });
  const desc = h("input", { id: "add-description", maxlength: "1024", oninput: markDirty });
  const err = h("div", { id: "add-error", class: "error", role: "alert" });
  const form = h(
    "form",
    {
      id: "add-origin",
      onsubmit: async (ev) => {
        ev.preventDefault();
        err.replaceChildren();
        try {
          const r = await api.call("PolicyService", "AddOrigin", {
            policy: p.name,
            etag: p.etag,
            origin: { pattern: pattern.value.trim(), allowCredentials: cred.checked, description: desc.value },
          });
          applyWrite(r.policy);
          document.getElementById("add-pattern")?.focus();
        } catch (e) {
          if (e.code === "aborted") return stale(err);
          showError(err, e);
          markInvalid(form, e, [["origin.pattern", "add-pattern"], ["origin.allow_credentials", "add-credentials"], ["origin.description", "add-description"]]);
        }
      },
    },
    h("h4", {}, "Add a trusted origin"),
    field("add-pattern", "Pattern", pattern, "An exact origin, https://*.example.com, http://localhost:*, * or null."),
    h("div", { class: "field check" }, cred, h("label", { for: "add-credentials" }, "Allow credentials (cookies, HTTP auth)")),
    field("add-description", "Description", desc),
    h("button", { type: "submit", id: "add-submit" }, "Add origin"),
    err,
  );
  return form;
}

function list(v) {
  return v
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

function settingsSection(p, ro) {
  const methods = h("input", { id: "methods", value: (p.allowedMethods || []).join(", "), oninput: markDirty, disabled: ro });
  const reqh = h("input", { id: "req-headers", value: (p.allowedRequestHeaders || []).join(", "), oninput: markDirty, disabled: ro });
  const exph = h("input", { id: "exp-headers", value: (p.exposedResponseHeaders || []).join(", "), oninput: markDirty, disabled: ro });
  const maxAge = h("input", { id: "max-age", type: "number", min: "0", max: "86400", value: p.maxAge ? String(parseInt(p.maxAge, 10)) : "", oninput: markDirty, disabled: ro, "aria-describedby": "max-age-hint" });
  const mode = h(
    "select",
    { id: "mode", onchange: markDirty, disabled: ro },
    ["MODE_ENFORCE", "MODE_REPORT_ONLY", "MODE_DISABLED"].map((m) => h("option", { value: m, selected: (p.mode || "MODE_ENFORCE") === m || (m === "MODE_ENFORCE" && p.mode === "MODE_UNSPECIFIED") }, show(m))),
  );
  const err = h("div", { id: "settings-error", class: "error", role: "alert" });
  const form = h(
    "form",
    {
      id: "settings",
      onsubmit: async (ev) => {
        ev.preventDefault();
        err.replaceChildren();
        const pol = {
          name: p.name,
          etag: p.etag,
          allowedMethods: list(methods.value),
          allowedRequestHeaders: list(reqh.value),
          exposedResponseHeaders: list(exph.value),
          mode: mode.value,
        };
        if (maxAge.value !== "") pol.maxAge = `${Number(maxAge.value)}s`;
        try {
          const r = await api.call("PolicyService", "UpdatePolicy", { policy: pol, updateMask: "allowedMethods,allowedRequestHeaders,exposedResponseHeaders,maxAge,mode" });
          applyWrite(r.policy);
        } catch (e) {
          if (e.code === "aborted") return stale(err);
          showError(err, e);
          markInvalid(form, e, [
            ["policy.allowed_methods", "methods"],
            ["policy.allowed_request_headers", "req-headers"],
            ["policy.exposed_response_headers", "exp-headers"],
            ["policy.max_age", "max-age"],
            ["policy.mode", "mode"],
          ]);
        }
      },
    },
    field("methods", "Allowed methods", methods, "Comma-separated, such as PUT, DELETE. GET, HEAD and POST need no listing."),
    field("req-headers", "Allowed request headers", reqh),
    field("exp-headers", "Exposed response headers", exph),
    field("max-age", "Max age (seconds)", maxAge, "How long browsers cache a preflight; empty for the browser's default."),
    field("mode", "Mode", mode),
    ro ? null : h("button", { type: "submit", id: "save-settings" }, "Save settings"),
    err,
  );
  return h("section", { "aria-labelledby": "settings-h" }, h("h3", { id: "settings-h" }, "Methods, headers, max age and mode"), form);
}

// ---- test a request ------------------------------------------------------------

function testSection(p) {
  const first = (p.origins || []).find((o) => o.pattern.startsWith("http") && !o.pattern.includes("*"));
  const origin = h("input", { id: "t-origin", value: first ? first.pattern : "https://app.example.com" });
  const method = h("input", { id: "t-method", value: "GET" });
  const acrm = h("input", { id: "t-acrm", placeholder: "PUT", "aria-describedby": "t-acrm-hint" });
  const acrh = h("input", { id: "t-acrh", placeholder: "content-type,x-api-key" });
  const host = h("input", { id: "t-host", placeholder: "api.example.com" });
  const cred = h("input", { id: "t-credentials", type: "checkbox" });
  const out = h("div", { id: "t-result", "aria-live": "polite" });
  const form = h(
    "form",
    {
      id: "test",
      onsubmit: async (ev) => {
        ev.preventDefault();
        out.replaceChildren();
        try {
          const r = await api.call("DecisionService", "CheckOrigin", {
            policy: p.name,
            host: host.value.trim(),
            method: method.value.trim(),
            origin: origin.value.trim(),
            accessControlRequestMethod: acrm.value.trim(),
            accessControlRequestHeaders: acrh.value.trim(),
          });
          out.replaceChildren(...renderDecision(r, cred.checked));
        } catch (e) {
          showError(out, e);
        }
      },
    },
    field("t-origin", "Origin", origin),
    field("t-method", "Method", method, "OPTIONS with a requested method below makes a preflight."),
    field("t-acrm", "Access-Control-Request-Method", acrm, "For a preflight: the method the page wants to use."),
    field("t-acrh", "Access-Control-Request-Headers", acrh),
    field("t-host", "Request host", host),
    h("div", { class: "field check" }, cred, h("label", { for: "t-credentials" }, "With credentials (fetch credentials: 'include')")),
    h("button", { type: "submit", id: "t-run" }, "Test"),
    out,
  );
  return h("section", { "aria-labelledby": "test-h" }, h("h3", { id: "test-h" }, "Test a request"), form);
}

function renderDecision(r, withCredentials) {
  const d = r.decision || {};
  const hdrs = d.responseHeaders || [];
  const get = (n) => hdrs.find((x) => x.name.toLowerCase() === n.toLowerCase())?.value;
  const lines = [];
  lines.push(h("p", { id: "t-verdict", class: d.allowed ? "allowed" : "refused" }, d.allowed ? "Allowed" : "Refused", d.mode === "MODE_REPORT_ONLY" ? " (report-only: not enforced)" : ""));
  lines.push(h("p", { id: "t-reason" }, h("strong", {}, (d.reason || "").replace(/^REASON_/, "").toLowerCase().replaceAll("_", " ") + ": "), d.message || ""));
  lines.push(h("p", {}, d.replyStatus ? `corsd answers the request itself with status ${d.replyStatus}.` : "The request goes on to the API, with these headers added to its response."));
  lines.push(h("pre", { id: "t-headers" }, hdrs.length ? hdrs.map((x) => `${x.name}: ${x.value}${x.append ? "   (appended)" : ""}`).join("\n") : "(no CORS response headers)"));
  if (withCredentials && d.allowed && d.kind !== "DECISION_KIND_NOT_CORS") {
    const acao = get("Access-Control-Allow-Origin");
    const acac = get("Access-Control-Allow-Credentials");
    const ok = acao && acao !== "*" && acac === "true";
    lines.push(
      h(
        "p",
        { id: "t-credentials-verdict", class: ok ? "allowed" : "refused" },
        ok ? "With credentials, the browser lets the page read the response." : "With credentials, the browser refuses: it needs Access-Control-Allow-Credentials: true and an explicit Access-Control-Allow-Origin (not *).",
      ),
    );
  }
  lines.push(h("details", {}, h("summary", {}, "Full response"), h("pre", {}, JSON.stringify(r, null, 2))));
  return lines;
}

// ---- audit -----------------------------------------------------------------

function auditSection() {
  return h("section", { "aria-labelledby": "audit-h" }, h("h3", { id: "audit-h" }, "Change log"), h("ol", { id: "audit", reversed: true }, h("li", {}, "Loading…")));
}

async function loadAudit(name) {
  const ol = document.getElementById("audit");
  if (!ol) return;
  let changes = [];
  try {
    let pageToken = "";
    for (let i = 0; i < 10; i++) {
      const r = await api.call("PolicyService", "ListChanges", { policy: name, pageSize: 1000, pageToken });
      changes = changes.concat(r.changes || []);
      pageToken = r.nextPageToken || "";
      if (!pageToken) break;
    }
  } catch (e) {
    ol.replaceChildren(h("li", { class: "error" }, e.message));
    return;
  }
  if (!state.current || state.current.name !== name) return;
  changes = changes.slice(-100).reverse();
  ol.replaceChildren(
    ...changes.map((c) =>
      h(
        "li",
        { "data-revision": c.revision },
        h("p", { class: "who" }, h("strong", { class: "actor" }, c.actor || "?"), ` ${KIND[c.kind] || "changed"} it · ${when(c.changeTime)} · revision ${c.revision}`),
        h(
          "ul",
          { class: "diff" },
          diff(c.before, c.after).map((l) => h("li", { class: l.op === "+" ? "add" : l.op === "-" ? "del" : "mod" }, h("span", { "aria-hidden": "true" }, l.op + " "), h("span", { class: "sr" }, l.op === "+" ? "added " : l.op === "-" ? "removed " : "changed "), l.text)),
        ),
      ),
    ),
  );
  if (!changes.length) ol.replaceChildren(h("li", {}, "No retained change."));
}

boot();
