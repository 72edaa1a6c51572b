// Package trustwatch keeps the controller's TUF trust root fresh and tells
// the cluster what changed: it refreshes the repository stepseal-config's
// trust.* keys name on an interval, and records
//
//   - Kubernetes Events on the stepseal-config ConfigMap: TrustUpdated
//     (versions that moved), TrustKeyRevoked (a key removed from a role or
//     from a top-level role, with the revocation's reason when the
//     delegator recorded one, and the paths it affected), TrustExpiringSoon
//     (a role expiring within trust.expiry-warning, once per role version)
//     and TrustRefreshFailed (the error, and until when the last trusted
//     state still holds);
//   - metrics: stepseal_trust_expiry_seconds{role} (seconds until each
//     loaded role expires), stepseal_trust_refresh_failures_total and
//     stepseal_trust_events_total{reason} (each Event, by reason).
//
// With trust.online.* it also re-signs the online roles (timestamp, and
// snapshot near its expiry) before they expire, from the state it just
// verified (pkg/trust/repo Resign; TrustResigned, TrustResignFailed,
// stepseal_trust_resigns_total). TrustUpdated names the target paths that
// changed; TrustSuspectedFastForward flags a version jump and the rollback
// refusal after one. With trust.recipients-policy it audits released
// artifacts against the platform policy TUF vouches for after each change
// (TrustStaleRecipients, stale-recipients.json in stepseal-trust) and, with
// trust.reencrypt.secret, re-encrypts the stale ones for their team to
// release (TrustReencrypted, TrustReencryptFailed).
//
// When a refresh fails the last verified state stays in force until it
// expires (pkg/trust refuses expired metadata at lookup time), so a
// repository that is down does not stop the controller at once, and the
// Events say so. The cache directory holds the trusted root; trust.root
// bootstraps it on first use only.
package trustwatch
