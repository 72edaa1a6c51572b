package settings

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/stepseal/stepseal/pkg/signing"
)

// The vsa.* keys: whether the PipelineRun controller verifies each signed
// PipelineRun against the layout TUF releases for its pipeline and signs a
// SLSA VSA of the outcome, and with which key.
const (
	// KeyVSAEnabled turns the VSA step on ("true"; default "false").
	KeyVSAEnabled = "vsa.enabled"
	// KeyVSAVerifierID is the VSA's verifier.id, the URI admission pairs
	// with the verifier key. Required when vsa.enabled is true.
	KeyVSAVerifierID = "vsa.verifier-id"
	// KeyVSASecret names the Secret in the controller's own namespace
	// holding the verifier key (cosign.key, cosign.password; default
	// "stepseal-vsa-key"). There is no per-namespace variant: the verifier
	// key is the controller's, never a tenant's.
	KeyVSASecret = "vsa.secret"
	// KeyVSAKMS is a KMS key URI used instead of the vsa.secret Secret.
	KeyVSAKMS = "vsa.kms"
)

// VSA is the vsa.* part of the Config.
type VSA struct {
	Enabled    bool
	VerifierID string
	Secret     string
	KMS        string
}

func defaultVSA() VSA { return VSA{Secret: "stepseal-vsa-key"} }

// vsaSetting parses a vsa.* key into c; it returns whether k is one, and
// what is wrong with v.
func vsaSetting(c *Config, k, v string) (bool, string) {
	switch k {
	case KeyVSAEnabled:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return true, fmt.Sprintf("%q is not a boolean", v)
		}
		c.VSA.Enabled = b
	case KeyVSAVerifierID:
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == "") {
			return true, fmt.Sprintf("%q is not an absolute URI", v)
		}
		c.VSA.VerifierID = v
	case KeyVSASecret:
		if v == "" {
			return true, "empty"
		}
		c.VSA.Secret = v
	case KeyVSAKMS:
		if !signing.IsKMSURI(v) {
			return true, fmt.Sprintf("%q is not a KMS key URI (scheme://key)", v)
		}
		c.VSA.KMS = v
	default:
		return false, ""
	}
	return true, ""
}

// checkVSA: an enabled VSA step needs a verifier ID.
func checkVSA(c *Config) string {
	if c.VSA.Enabled && c.VSA.VerifierID == "" {
		return fmt.Sprintf("%s is true but %s is not set", KeyVSAEnabled, KeyVSAVerifierID)
	}
	return ""
}
