package oci

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/stepseal/stepseal/pkg/reject"
	"github.com/stepseal/stepseal/pkg/signing"
)

// Errors callers branch on with errors.Is. Messages name the reference,
// registry or key involved. Each is also one reason of pkg/reject's shared
// vocabulary (noted per error): a refusal, or "could not check"
// (reject.ErrUnableToCheck) when the registry could not be asked.
var (
	// ErrReference: a reference is malformed or lacks a tag or digest.
	// reject.ErrMalformed.
	ErrReference = reject.Sentinel(reject.ErrMalformed, "invalid reference")
	// ErrInsecure: plain HTTP or unverified TLS was asked for a registry
	// that is not on loopback. reject.ErrUnsupported (refused on purpose).
	ErrInsecure = reject.Sentinel(reject.ErrUnsupported, "insecure registry refused")
	// ErrUnreachable: the registry could not be contacted.
	// reject.ErrUnavailable (could not check).
	ErrUnreachable = reject.Sentinel(reject.ErrUnavailable, "registry unreachable")
	// ErrRegistryAuth: the registry refused our credentials (HTTP 401 or
	// 403). The artifact was not examined, so this is no verdict on it:
	// reject.ErrUnavailable (could not check), not reject.ErrUnauthorized.
	ErrRegistryAuth = reject.Sentinel(reject.ErrUnavailable, "registry authentication failed")
	// ErrNotFound: the manifest or blob does not exist. reject.ErrMissing.
	ErrNotFound = reject.Sentinel(reject.ErrMissing, "not found in registry")
	// ErrBlobDigest: content read from the registry does not match its
	// digest (tampering). reject.ErrMismatch.
	ErrBlobDigest = reject.Sentinel(reject.ErrMismatch, "content does not match its digest")
	// ErrArtifact: the artifact is not of the kind asked for, or is
	// malformed. reject.ErrMalformed.
	ErrArtifact = reject.Sentinel(reject.ErrMalformed, "unsupported artifact")
	// ErrNoSignature: no signature (or attestation) is attached to the
	// digest. reject.ErrMissing.
	ErrNoSignature = reject.Sentinel(reject.ErrMissing, "no signature found")
	// ErrSignature: signatures exist but none verifies with the key. It is
	// signing.ErrSignature (reject.ErrSignature), so one errors.Is serves
	// every verifier.
	ErrSignature = signing.ErrSignature
	// ErrDigestMismatch: a validly signed payload names another image's
	// digest (a signature or attestation copied from another image).
	// reject.ErrMismatch.
	ErrDigestMismatch = reject.Sentinel(reject.ErrMismatch, "signed payload is for another digest")
	// ErrTooMany: more signatures, attestations or referrers attached to
	// an image than one verification reads (MaxCandidates, MaxReferrers):
	// refused rather than read without bound. reject.ErrPolicy.
	ErrTooMany = reject.Sentinel(reject.ErrPolicy, "too many signatures or attestations")
	// ErrManifestTooLarge: a manifest, index or referrers list larger
	// than a Client reads (MaxManifestBytes): refused before it is read
	// whole or parsed. reject.ErrPolicy.
	ErrManifestTooLarge = reject.Sentinel(reject.ErrPolicy, "manifest too large")
	// ErrPlainHTTP: the registry answered HTTPS with plain HTTP. Such an
	// error is also ErrUnreachable; see PlainHTTPError.
	// reject.ErrUnavailable.
	ErrPlainHTTP = reject.Sentinel(reject.ErrUnavailable, "registry speaks plain HTTP")
)

// PlainHTTPError: the registry answered an HTTPS request with plain HTTP. It
// needs the insecure option, which only a loopback registry may have
// (Loopback). errors.Is matches both ErrUnreachable and ErrPlainHTTP.
type PlainHTTPError struct {
	Registry string
	Loopback bool
}

func (e *PlainHTTPError) Error() string {
	return fmt.Sprintf("%v: registry %s: http: server gave HTTP response to HTTPS client", ErrUnreachable, e.Registry)
}

// Is makes errors.Is(err, ErrUnreachable), errors.Is(err, ErrPlainHTTP)
// and errors.Is(err, reject.ErrUnavailable) true: the check could not be
// carried out.
func (e *PlainHTTPError) Is(target error) bool {
	return target == ErrUnreachable || target == ErrPlainHTTP || reject.Matches(reject.ErrUnavailable, target)
}

// registryError turns a go-containerregistry error into a one-line error of
// one of our categories naming the registry.
func registryError(registry string, err error) error {
	if err == nil {
		return nil
	}
	for _, e := range []error{ErrInsecure, ErrBlobDigest, ErrReference, ErrArtifact, ErrPlainHTTP, ErrManifestTooLarge} {
		if errors.Is(err, e) {
			return err
		}
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: registry %s: %w", ErrRegistryAuth, registry, oneLineError{te})
		case http.StatusNotFound:
			return fmt.Errorf("%w: registry %s: %w", ErrNotFound, registry, oneLineError{te})
		}
		return fmt.Errorf("registry %s: %w", registry, oneLineError{te})
	}
	// Before the net.Error case: *url.Error is one, and its message holds
	// each ping scheme's failure (go-containerregistry tries HTTPS, then
	// HTTP, which the guard upgrades to HTTPS again: the same error twice).
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return &PlainHTTPError{Registry: registry, Loopback: IsLoopback(registry)}
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &oe) || errors.As(err, &ne) {
		return fmt.Errorf("%w: registry %s: %w", ErrUnreachable, registry, oneLineError{rootCause(err)})
	}
	return fmt.Errorf("registry %s: %w", registry, oneLineError{err})
}

// RegistryError classifies an error of go-containerregistry reading from
// registry into this package's errors (ErrNotFound, ErrUnreachable, ...),
// for callers that read through a v1.Image or v1.ImageIndex a Client
// returned.
func RegistryError(registry string, err error) error { return registryError(registry, err) }

func rootCause(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe
	}
	return err
}

// oneLineError is a cause whose message is folded onto one line (registry
// errors carry response bodies), still unwrapping to the cause.
type oneLineError struct{ err error }

func (e oneLineError) Error() string { return oneLine(e.err.Error()) }
func (e oneLineError) Unwrap() error { return e.err }

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
