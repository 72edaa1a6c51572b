package admission

import (
	"net"
	"time"

	"go.uber.org/zap"
)

// PolicyKey is the key of the policy ConfigMap that holds the admission
// policy (YAML or JSON).
const PolicyKey = "policy.yaml"

// The Event rate limit of Run: sustained Events per second, and burst.
const (
	EventRate  = 10
	EventBurst = 100
)

// RunOptions configure incluster.Run (pkg/admission/incluster): the webhook as a Deployment runs it, with its
// configuration, serving certificate and webhook configurations all read
// through the API (no volume).
type RunOptions struct {
	// Namespace is the webhook's own (SYSTEM_NAMESPACE; knative's
	// certificates controller reads that variable, and it must agree).
	Namespace string
	// PolicyConfigMap holds the policy under PolicyKey; watched, and a new
	// policy that does not parse keeps the last good one.
	PolicyConfigMap string
	// CertSecret is the Secret knative's certificates controller fills and
	// renews (created empty by the release YAML).
	CertSecret string
	// Service is the webhooks' Service (its name is in the certificate).
	Service string
	// WebhookConfig names the Mutating- and ValidatingWebhookConfiguration
	// whose caBundle is kept in step with CertSecret.
	WebhookConfig string
	// NamespaceLabel, when set, serves the label guard on PathNamespaces.
	NamespaceLabel string
	// Listener serves the webhook (TLS is added here).
	Listener net.Listener
	// MetricsAddr serves Prometheus metrics on /metrics ("" for none).
	MetricsAddr string
	// Decide is the decision configuration without Policy (registry, key
	// sources, VSA checker, platform, deadline). Its Cache is shared by
	// every policy version; one is made when nil.
	Decide Config
	// PlatformLabel, when set, makes the cluster multi-platform
	// (Config.Nodes): a Pod's encrypted images are checked for the
	// platform its node's label PlatformLabel names. Run then watches every
	// Node (list and watch nodes, and get for one not yet seen: RBAC the
	// release does not grant).
	PlatformLabel string
	// CertGrace: DefaultCertGrace when 0.
	CertGrace time.Duration
	// Ready, when set, is closed once the informers synced and the server
	// is listening.
	Ready  chan<- struct{}
	Logger *zap.SugaredLogger
}
