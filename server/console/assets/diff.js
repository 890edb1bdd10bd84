// Readable differences between two versions of a policy, for the audit log.

const FIELDS = [
  ["description", "description"],
  ["allowedMethods", "allowed methods"],
  ["allowedRequestHeaders", "allowed request headers"],
  ["exposedResponseHeaders", "exposed response headers"],
  ["maxAge", "max age"],
  ["allowPrivateNetwork", "private network access"],
  ["hosts", "hosts"],
  ["mode", "mode"],
  ["crossOriginProtection", "cross-origin protection"],
  ["preflightSuccessStatus", "preflight success status"],
  ["preflightFailureStatus", "preflight failure status"],
];

export function show(v) {
  if (v === undefined || v === null || v === "") return "(unset)";
  if (Array.isArray(v)) return v.length ? v.join(", ") : "(none)";
  if (typeof v === "string" && v.startsWith("MODE_")) return v.slice(5).toLowerCase().replace("_", "-");
  return String(v);
}

export function ruleText(o) {
  let s = o.pattern;
  s += o.allowCredentials ? " (with credentials)" : " (without credentials)";
  if (o.description) s += ` — ${o.description}`;
  return s;
}

function same(a, b) {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

// diff returns lines {op: "+"|"-"|"~", text} from before to after (either
// may be null: a create or a delete).
export function diff(before, after) {
  const lines = [];
  const b = before || {};
  const a = after || {};
  const bo = new Map((b.origins || []).map((o) => [o.pattern, o]));
  const ao = new Map((a.origins || []).map((o) => [o.pattern, o]));
  for (const [p, o] of ao) {
    if (!bo.has(p)) lines.push({ op: "+", text: "origin " + ruleText(o) });
    else if (!same(bo.get(p), o)) lines.push({ op: "~", text: `origin ${p}: ${ruleText(bo.get(p))} → ${ruleText(o)}` });
  }
  for (const [p, o] of bo) {
    if (!ao.has(p)) lines.push({ op: "-", text: "origin " + ruleText(o) });
  }
  for (const [key, label] of FIELDS) {
    const bv = emptyish(b[key]);
    const av = emptyish(a[key]);
    if (!same(bv, av)) {
      if (!before) lines.push({ op: "+", text: `${label}: ${show(av)}` });
      else if (!after) lines.push({ op: "-", text: `${label}: ${show(bv)}` });
      else lines.push({ op: "~", text: `${label}: ${show(bv)} → ${show(av)}` });
    }
  }
  return lines;
}

function emptyish(v) {
  if (v === false || v === 0 || v === "" || v === null || v === undefined) return null;
  if (Array.isArray(v) && v.length === 0) return null;
  if (v === "MODE_UNSPECIFIED") return null;
  return v;
}
