// Package client is the Go SDK of corsd: a thin gRPC client for the admin
// and decision APIs, a Watcher that keeps a local, compiled snapshot of some
// policies fresh through DecisionService.WatchPolicies, and a net/http
// middleware that enforces those policies from the snapshot, with no network
// call per request.
//
// A typical service dials corsd once, watches the policy of its API and
// wraps its handler:
//
//	c, err := client.Dial("corsd.internal:8443", client.WithToken(token))
//	...
//	w, err := client.NewWatcher(c, []string{"policies/acme"},
//		client.WithCacheFile("/var/cache/acme/cors.json"))
//	...
//	go w.Run(ctx)
//	_ = w.WaitReady(readyCtx) // optional: lets NewMiddleware check the name
//	cors, err := w.NewMiddleware("policies/acme")
//	...
//	http.ListenAndServe(":8080", cors(mux))
//
// An explicit policy name that does not exist is never a quiet "no
// policy": NewMiddleware returns an error wrapping ErrUnknownPolicy when the
// Watcher does not watch the name or its snapshot lacks it, and the Watcher
// logs a warning for a watched name its first snapshot lacks and for a
// policy deleted later.
//
// The Watcher keeps deciding from its last snapshot while corsd is
// unreachable, resumes the stream from its last revision when corsd comes
// back, and (with a cache file) can decide right after a restart, before
// corsd answers. Decisions are made by the same engine as corsd's
// (package policy), so the SDK and the server give the same answers.
package client
