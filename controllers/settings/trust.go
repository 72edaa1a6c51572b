package settings

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/stepseal/stepseal/pkg/signing"
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

	// KeyTrustOnlinePublish turns on the controller's online re-signing:
	// where the repository at trust.url is published and the controller
	// writes the re-signed timestamp and snapshot — oci://registry/repo
	// (credentials: the controller's docker config) or an absolute
	// directory the controller shares with the web server (its metadata/).
	KeyTrustOnlinePublish = "trust.online.publish"
	// KeyTrustOnlineKeySecret names the Secret (controller's namespace;
	// cosign.key and cosign.password, like the signing Secret) holding the
	// online key; KeyTrustOnlineKMS a KMS key URI instead.
	KeyTrustOnlineKeySecret = "trust.online.key-secret"
	KeyTrustOnlineKMS       = "trust.online.kms"
	// KeyTrustOnlineResignBefore: the timestamp is re-signed when it
	// expires within this (default 12h); it must be shorter than
	// KeyTrustOnlineTimestampExpiry.
	KeyTrustOnlineResignBefore = "trust.online.resign-before"
	// KeyTrustOnlineTimestampExpiry and KeyTrustOnlineSnapshotExpiry: how
	// long a re-signed timestamp (default 24h) and snapshot (default
	// 168h) stay valid.
	KeyTrustOnlineTimestampExpiry = "trust.online.timestamp-expiry"
	KeyTrustOnlineSnapshotExpiry  = "trust.online.snapshot-expiry"
	// KeyTrustRecipientsPolicy names a platform policy TUF vouches for
	// (policies/<name>.policy, or the short name): after each change of
	// the trusted metadata the controller checks every released artifact's
	// recipients against it (TrustStaleRecipients).
	KeyTrustRecipientsPolicy = "trust.recipients-policy"
	// KeyTrustReencryptSecret names a Secret (controller's namespace)
	// holding the publisher's key (cosign.key, cosign.password) and a
	// platform's decryption key still authorized (decryption.key): with
	// it, the controller re-encrypts each stale released artifact to the
	// current policy (TrustReencrypted); its team then releases the new
	// digest.
	KeyTrustReencryptSecret = "trust.reencrypt.secret"
)

// Online is the trust.online.* part: the controller's re-signing of the
// repository's online roles.
type Online struct {
	Publish                         string
	KeySecret, KMS                  string
	ResignBefore                    time.Duration
	TimestampExpiry, SnapshotExpiry time.Duration
}

// Enabled says whether the controller re-signs the online roles.
func (o Online) Enabled() bool { return o.Publish != "" }

// Trust is the trust.* part of the Config.
type Trust struct {
	URL           string
	Root          string
	CacheDir      string
	Interval      time.Duration
	ExpiryWarning time.Duration
	Online        Online
	// RecipientsPolicy: KeyTrustRecipientsPolicy.
	RecipientsPolicy string
	// ReencryptSecret: KeyTrustReencryptSecret.
	ReencryptSecret string
}

// Enabled says whether a TUF repository is configured.
func (t Trust) Enabled() bool { return t.URL != "" }

func defaultTrust() Trust {
	return Trust{CacheDir: "/var/lib/stepseal/trust", Interval: 5 * time.Minute, ExpiryWarning: 12 * time.Hour,
		Online: Online{ResignBefore: 12 * time.Hour, TimestampExpiry: 24 * time.Hour, SnapshotExpiry: 7 * 24 * time.Hour}}
}

// trustSetting parses a trust.* key into c; it returns whether k is one,
// and what is wrong with v.
func trustSetting(c *Config, k, v string) (bool, string) {
	switch k {
	case KeyTrustURL:
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "oci") || u.Host == "" {
			return true, fmt.Sprintf("%q is not an http(s) URL or oci://registry/repository", v)
		}
		c.Trust.URL = v
	case KeyTrustRecipientsPolicy:
		if v == "" || strings.ContainsAny(v, " \t\n") {
			return true, fmt.Sprintf("%q is not a policy name or target path", v)
		}
		c.Trust.RecipientsPolicy = v
	case KeyTrustReencryptSecret:
		if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
			return true, fmt.Sprintf("%q is not a Secret name", v)
		}
		c.Trust.ReencryptSecret = v
	case KeyTrustOnlinePublish:
		u, err := url.Parse(v)
		if !strings.HasPrefix(v, "/") && (err != nil || u.Scheme != "oci" || u.Host == "" || u.Path == "") {
			return true, fmt.Sprintf("%q is neither oci://registry/repository nor an absolute directory", v)
		}
		c.Trust.Online.Publish = v
	case KeyTrustOnlineKeySecret:
		if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
			return true, fmt.Sprintf("%q is not a Secret name", v)
		}
		c.Trust.Online.KeySecret = v
	case KeyTrustOnlineKMS:
		if !signing.IsKMSURI(v) {
			return true, fmt.Sprintf("%q is not a KMS key URI (scheme://key)", v)
		}
		c.Trust.Online.KMS = v
	case KeyTrustOnlineResignBefore, KeyTrustOnlineTimestampExpiry, KeyTrustOnlineSnapshotExpiry:
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return true, fmt.Sprintf("%q is not a duration of at least 1s", v)
		}
		switch k {
		case KeyTrustOnlineResignBefore:
			c.Trust.Online.ResignBefore = d
		case KeyTrustOnlineTimestampExpiry:
			c.Trust.Online.TimestampExpiry = d
		default:
			c.Trust.Online.SnapshotExpiry = d
		}
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

// checkOnline is what is wrong across the trust.online.* keys ("" if
// nothing).
func (t Trust) checkOnline() string {
	o := t.Online
	if t.ReencryptSecret != "" && t.RecipientsPolicy == "" {
		return fmt.Sprintf("%s without %s: the policy decides what to re-encrypt to", KeyTrustReencryptSecret, KeyTrustRecipientsPolicy)
	}
	switch {
	case !o.Enabled() && (o.KeySecret != "" || o.KMS != ""):
		return fmt.Sprintf("%s or %s without %s", KeyTrustOnlineKeySecret, KeyTrustOnlineKMS, KeyTrustOnlinePublish)
	case !o.Enabled():
		return ""
	case t.URL == "":
		return fmt.Sprintf("%s without %s: the controller re-signs only what it verified from there", KeyTrustOnlinePublish, KeyTrustURL)
	case (o.KeySecret == "") == (o.KMS == ""):
		return fmt.Sprintf("%s needs exactly one of %s and %s", KeyTrustOnlinePublish, KeyTrustOnlineKeySecret, KeyTrustOnlineKMS)
	case o.ResignBefore >= o.TimestampExpiry:
		return fmt.Sprintf("%s %v is not shorter than %s %v: every refresh would re-sign", KeyTrustOnlineResignBefore, o.ResignBefore, KeyTrustOnlineTimestampExpiry, o.TimestampExpiry)
	}
	return ""
}
