// Package browser is the real-browser end-to-end suite: headless Chromium
// loads pages from several HTTPS origins (app.test, admin.test, evil.test,
// all resolved to 127.0.0.1 by Chromium's host resolver rules) and calls an
// API protected by corsd in two ways, both fed by one real corsd process:
// the client package's middleware (api.test) and the ext_authz path through
// internal/envoyemu (api-envoy.test). The tests check what the browser
// itself lets scripts read, send and submit, not just the headers corsd
// returns.
//
// TestConsole drives corsd's web console (/console/) the same way, against
// a real corsd with tokens and the real corsctl, and saves a screenshot of
// each step under testoutput/console (CONSOLE_SCREENSHOTS overrides it).
//
// The suite needs Chromium (`make chromium` installs Debian's package) and
// fails, rather than skips, when it cannot start it.
package browser
