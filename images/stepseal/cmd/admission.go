package cmd

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stepseal/stepseal/pkg/admission"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/store"
	"github.com/stepseal/stepseal/pkg/trust"
)

func newAdmission(ro *rootOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "admission",
		Short: "The admission webhook's decisions on Pods' images",
	}
	c.AddCommand(newAdmissionCheck(ro), newAdmissionServe(ro))
	return c
}

// decisionFlags build the Decider that check and serve share.
type decisionFlags struct {
	policyPath, platform string
	deadline             time.Duration
	reg                  registryFlags
	pp                   policyFlags
	// trustClient is the refreshed TUF client with --trust (nil without).
	trustClient *trust.Client
}

func (f *decisionFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.policyPath, "policy", "", "admission policy file (YAML or JSON)")
	c.Flags().StringVar(&f.platform, "platform", "", "this cluster's platform name (for encrypted images)")
	c.Flags().DurationVar(&f.deadline, "deadline", admission.DefaultDeadline, "bound on one decision (below the webhook's timeoutSeconds)")
	f.pp.add(c)
	f.reg.add(c)
}

func (f *decisionFlags) decider(ctx context.Context) (*admission.Decider, error) {
	if f.policyPath == "" {
		return nil, fmt.Errorf("--policy is required")
	}
	pol, err := admission.LoadPolicy(f.policyPath)
	if err != nil {
		return nil, err
	}
	cfg, err := f.config(ctx)
	if err != nil {
		return nil, err
	}
	cfg.Policy = pol
	return admission.NewDecider(cfg)
}

// config is the decision configuration without the policy.
func (f *decisionFlags) config(ctx context.Context) (admission.Config, error) {
	var platformPolicy *policy.Policy
	var err error
	if f.pp.path != "" {
		if platformPolicy, err = f.pp.load(ctx); err != nil {
			return admission.Config{}, err
		}
	}
	client, err := f.reg.client()
	if err != nil {
		return admission.Config{}, err
	}
	vc := admission.RegistryVSA{Registry: client}
	cfg := admission.Config{Platform: f.platform, PlatformPolicy: platformPolicy, Registry: client, Deadline: f.deadline}
	if f.pp.trust.enabled() {
		root, err := f.pp.trust.open(ctx)
		if err != nil {
			return admission.Config{}, err
		}
		f.trustClient = root.Client()
		tk := admission.TrustKeys{Client: f.trustClient}
		cfg.Keys, cfg.TrustVersion = tk, tk.Version
		// A VSA rule naming a layout: the digest TUF vouches for now.
		vc.LayoutDigest = func(ctx context.Context, name string) (string, error) {
			d, err := root.Layout(ctx, name)
			if err != nil {
				return "", err
			}
			return store.Digest(d.Data), nil
		}
		// Every VSA: none of its inputs signed by a key the layout it
		// names revokes now.
		vc.Revocations = root.Revocations
	}
	cfg.VSA = vc
	return cfg, nil
}

func newAdmissionCheck(ro *rootOptions) *cobra.Command {
	var (
		f          decisionFlags
		pullPolicy string
	)
	c := &cobra.Command{
		Use:   "check IMAGE --policy FILE --platform P [--platform-policy FILE] [--trust URL] [--pull-policy Always]",
		Short: "Decide one image as the admission webhook would for a container naming it",
		Long: `Decide one image as the admission webhook would for a container naming it:
the image must be by digest, covered by a rule of the admission policy (else
it is denied without contacting its registry), and meet the rule's
requirement (signed, digest; vsa needs the webhook's VSA checker). With
--trust, rules with keysFrom: trust take the keys of the TUF role that
vouches for the repository's tags, and --platform-policy names a TUF
target. An encrypted image must be authorised for --platform, its
recipients must be exactly the platform policy's, and --pull-policy must be
Always. Exits non-zero when the image is denied.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := f.decider(cmd.Context())
			if err != nil {
				return err
			}
			dec := d.CheckImage(cmd.Context(), args[0], corev1.PullPolicy(pullPolicy))
			if err := ro.print(cmd.OutOrStdout(), dec, func(w io.Writer) { printDecision(w, dec) }); err != nil {
				return err
			}
			if !dec.Allowed {
				return reportedError{err: dec.Err()}
			}
			return nil
		},
	}
	c.Flags().StringVar(&pullPolicy, "pull-policy", "", "the container's imagePullPolicy (encrypted images need Always)")
	f.add(c)
	return c
}

func newAdmissionServe(ro *rootOptions) *cobra.Command {
	var (
		f                        decisionFlags
		addr, cert, key, nsLabel string
		refresh                  time.Duration
		in                       inClusterFlags
	)
	c := &cobra.Command{
		Use:   "serve (--policy FILE --tls-cert FILE --tls-key FILE | --policy-configmap NAME) --platform P [--addr :8443] [--platform-policy FILE] [--trust URL]",
		Short: "Serve the admission webhook: /validate, /mutate (tags to digests, Pods only), /healthz",
		Long: `Serve the admission webhook over TLS: /validate answers AdmissionReview v1
for Pod CREATE/UPDATE and pods/ephemeralcontainers, /mutate rewrites tags to
digests (Pods only), /healthz, and with --namespace-label /namespaces (the
label guard for Namespace UPDATE).

From files (--policy, --tls-cert, --tls-key): the serving certificate is
read again when its files change.

In a cluster (--policy-configmap, as the release's Deployment runs it): the
policy comes from that ConfigMap's policy.yaml (watched; a policy that does
not parse keeps the last good one), the serving certificate from the Secret
--cert-secret that knative's certificates controller fills and renews, whose
CA is kept in the caBundle of the webhook configurations --webhook-config;
Prometheus metrics are served on --metrics-addr and denials recorded as
Events on the Pod's owner (or its Namespace). No volume is needed.

With --trust, the TUF metadata is refreshed every --trust-refresh; a failed
refresh keeps the last verified state until it expires. Stops gracefully on
SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inCluster := in.policyConfigMap != ""
			if !inCluster && (cert == "" || key == "") {
				return fmt.Errorf("--tls-cert and --tls-key are required (or --policy-configmap in a cluster)")
			}
			if !inCluster && in.platformLabel != "" {
				return fmt.Errorf("--platform-label reads the cluster's Nodes: serve with --policy-configmap")
			}
			if inCluster && (f.policyPath != "" || cert != "" || key != "") {
				return fmt.Errorf("--policy-configmap takes the policy and certificate from the cluster: drop --policy, --tls-cert and --tls-key")
			}
			if inCluster && ro.inCluster == nil {
				// The lean binary does not link the clientset and knative's
				// controllers that serving in a cluster needs.
				return ro.execTekton(cmd.Context(), "admission serve --policy-configmap")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var (
				d   *admission.Decider
				cfg admission.Config
				err error
			)
			if inCluster {
				cfg, err = f.config(ctx)
			} else {
				d, err = f.decider(ctx)
			}
			if err != nil {
				return err
			}
			if f.trustClient != nil && refresh > 0 {
				go func() {
					t := time.NewTicker(refresh)
					defer t.Stop()
					for {
						select {
						case <-ctx.Done():
							return
						case <-t.C:
							if _, err := f.trustClient.Refresh(ctx); err != nil {
								fmt.Fprintf(cmd.ErrOrStderr(), "trust refresh: %v\n", err)
							}
						}
					}
				}()
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serving admission on https://%s\n", l.Addr())
			if inCluster {
				return in.run(ctx, ro.inCluster, l, cfg, nsLabel)
			}
			var guard *admission.LabelGuard
			if nsLabel != "" {
				guard = &admission.LabelGuard{Label: nsLabel}
			}
			return admission.Serve(ctx, l, admission.Mux(d, guard), &admission.CertReloader{CertFile: cert, KeyFile: key})
		},
	}
	c.Flags().StringVar(&addr, "addr", ":8443", "listen address")
	c.Flags().StringVar(&cert, "tls-cert", "", "serving certificate (PEM), re-read when it changes")
	c.Flags().StringVar(&key, "tls-key", "", "serving certificate's private key (PEM)")
	c.Flags().StringVar(&nsLabel, "namespace-label", "", "serve /namespaces: once a Namespace has this opt-in label, only system:masters may change or remove it")
	c.Flags().DurationVar(&refresh, "trust-refresh", 5*time.Minute, "with --trust: how often to refresh the TUF metadata")
	in.add(c)
	f.add(c)
	return c
}

// inClusterFlags configure serve as the release's Deployment runs it.
type inClusterFlags struct {
	policyConfigMap, certSecret, service, webhookConfig, namespace, metricsAddr, kubeconfig, platformLabel string
}

func (in *inClusterFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&in.policyConfigMap, "policy-configmap", "", "in a cluster: the ConfigMap (in --namespace) whose policy.yaml is the admission policy")
	c.Flags().StringVar(&in.certSecret, "cert-secret", "stepseal-admission-certs", "in a cluster: the serving-certificate Secret knative's certificates controller fills")
	c.Flags().StringVar(&in.service, "service", "stepseal-admission", "in a cluster: the webhooks' Service (named in the certificate)")
	c.Flags().StringVar(&in.webhookConfig, "webhook-config", "stepseal-admission", "in a cluster: the Mutating- and ValidatingWebhookConfiguration whose caBundle is kept")
	c.Flags().StringVar(&in.namespace, "namespace", os.Getenv("SYSTEM_NAMESPACE"), "in a cluster: the webhook's namespace (default $SYSTEM_NAMESPACE)")
	c.Flags().StringVar(&in.metricsAddr, "metrics-addr", ":9090", "in a cluster: Prometheus metrics on this address's /metrics (\"\" for none)")
	c.Flags().StringVar(&in.kubeconfig, "kubeconfig", "", "in a cluster: kubeconfig (default $KUBECONFIG, else the in-cluster ServiceAccount)")
	c.Flags().StringVar(&in.platformLabel, "platform-label", "", "in a multi-platform cluster: the Node label naming each node's platform (e.g. node-restriction.kubernetes.io/stepseal-platform); encrypted images are checked for the platform of the Pod's node or nodeSelector (needs list, watch and get of nodes)")
}

func (in *inClusterFlags) run(ctx context.Context, serve InCluster, l net.Listener, cfg admission.Config, nsLabel string) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = in.kubeconfig
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return err
	}
	zl, err := zap.NewProduction()
	if err != nil {
		return err
	}
	defer func() { _ = zl.Sync() }()
	return serve(ctx, rc, admission.RunOptions{
		Namespace: in.namespace, PolicyConfigMap: in.policyConfigMap, CertSecret: in.certSecret, Service: in.service,
		WebhookConfig: in.webhookConfig, NamespaceLabel: nsLabel, Listener: l, MetricsAddr: in.metricsAddr,
		Decide: cfg, Logger: zl.Sugar(), PlatformLabel: in.platformLabel,
	})
}

func printDecision(w io.Writer, dec admission.Decision) {
	for _, r := range dec.Images {
		switch {
		case r.Err == nil:
			fmt.Fprintf(w, "ALLOWED %s (rule %q)", r.Image, r.Rule)
			if r.Encrypted {
				fmt.Fprint(w, ", encrypted")
			}
			fmt.Fprintln(w)
		case r.Mode == admission.ModeWarn:
			fmt.Fprintf(w, "WARNING %s\n", r.Message)
		default:
			fmt.Fprintf(w, "DENIED  %s\n", r.Message)
		}
	}
}
