// Package testcert makes throwaway TLS serving certificates for tests: a
// fresh ECDSA P-256 CA and a leaf for one IP address signed by it, so a
// test server is reached over real TLS and its client trusts only that CA.
package testcert
