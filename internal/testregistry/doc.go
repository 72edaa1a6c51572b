// Package testregistry starts a real CNCF Distribution registry (the Debian
// docker-registry binary) on a free loopback port for tests, so pkg/oci is
// exercised against the registry users run rather than only ggcr's
// in-process one. Distribution 2.8 has no OCI 1.1 referrers API, which makes
// it the reference for the referrers tag-scheme fallback.
package testregistry
