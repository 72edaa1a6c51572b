package settings

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// The trust.* keys: where the controller takes its TUF trust root from
// and how it watches it (controllers/trustwatch).
const (
	// KeyTrustURL is the TUF repository's metadata URL. Unset: no trust
	// root is watched.
	KeyTrustURL = "trust.url"
	// KeyTrustRoot bootstraps the client on first use only: the root.json
	// itself (a value starting with "{") or the path of a mounted file. The
	// cached root (in KeyTrustCache) is the trusted one afterwards.
	KeyTrustRoot = "trust.root"
	// KeyTrustCache is the client's cache directory.
	KeyTrustCache = "trust.cache"
	// KeyTrustInterval is how often the metadata is refreshed.
	KeyTrustInterval = "trust.refresh-interval"
	// KeyTrustExpiryWarning is how long before a role's expiry the
	// controller warns (TrustExpiringSoon).
	KeyTrustExpiryWarning = "trust.expiry-warning"
)

// Trust is the trust.* part of the Config.
type Trust struct {
	URL           string
	Root          string
	CacheDir      string
	Interval      time.Duration
	ExpiryWarning time.Duration
}

// Enabled says whether a TUF repository is configured.
func (t Trust) Enabled() bool { return t.URL != "" }

func defaultTrust() Trust {
	return Trust{CacheDir: "/var/lib/stepseal/trust", Interval: 5 * time.Minute, ExpiryWarning: 12 * time.Hour}
}

// trustSetting parses a trust.* key into c; it returns whether k is one,
// and what is wrong with v.
func trustSetting(c *Config, k, v string) (bool, string) {
	switch k {
	case KeyTrustURL:
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return true, fmt.Sprintf("%q is not an http(s) URL", v)
		}
		c.Trust.URL = v
	case KeyTrustRoot:
		if v == "" || (!strings.HasPrefix(v, "{") && !strings.HasPrefix(v, "/")) {
			return true, "want root.json's content or an absolute path"
		}
		c.Trust.Root = v
	case KeyTrustCache:
		if !strings.HasPrefix(v, "/") {
			return true, fmt.Sprintf("%q is not an absolute path", v)
		}
		c.Trust.CacheDir = v
	case KeyTrustInterval, KeyTrustExpiryWarning:
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return true, fmt.Sprintf("%q is not a positive duration", v)
		}
		if k == KeyTrustInterval {
			if d < 10*time.Second {
				return true, fmt.Sprintf("%v is below the 10s minimum", d)
			}
			c.Trust.Interval = d
		} else {
			c.Trust.ExpiryWarning = d
		}
	default:
		return false, ""
	}
	return true, ""
}
