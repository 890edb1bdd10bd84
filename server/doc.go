// Package server implements corsd's gRPC services: corsd.v1.DecisionService
// (CheckOrigin, WatchPolicies), corsd.v1.PolicyService (the admin API),
// Envoy's ext_authz v3 Authorization service, grpc.health.v1 and server
// reflection, plus the HTTP handler for /metrics, /healthz and /readyz.
//
// Decisions read an immutable snapshot of compiled policies through an
// atomic pointer; the decision path takes no lock. The snapshot is loaded
// from the store at start, kept current by the store's watch stream, and
// updated by every successful admin write before the call returns, so a
// write is visible to the next decision once the admin call has returned.
//
// Every handler returns its errors through toStatus, the only place where
// domain errors become gRPC statuses.
package server
