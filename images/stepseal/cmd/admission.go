package cmd

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/stepseal/stepseal/pkg/admission"
	"github.com/stepseal/stepseal/pkg/policy"
)

func newAdmission(ro *rootOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "admission",
		Short: "The admission webhook's decisions on Pods' images (in progress)",
	}
	c.AddCommand(newAdmissionCheck(ro))
	return c
}

func newAdmissionCheck(ro *rootOptions) *cobra.Command {
	var (
		policyPath, platform, pullPolicy string
		deadline                         time.Duration
		reg                              registryFlags
		pp                               policyFlags
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
target. An
encrypted image must be authorised for --platform, its recipients must be
exactly the platform policy's, and --pull-policy must be Always.
Exits non-zero when the image is denied.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if policyPath == "" {
				return fmt.Errorf("--policy is required")
			}
			pol, err := admission.LoadPolicy(policyPath)
			if err != nil {
				return err
			}
			var platformPolicy *policy.Policy
			if pp.path != "" {
				if platformPolicy, err = pp.load(cmd.Context()); err != nil {
					return err
				}
			}
			client, err := reg.client()
			if err != nil {
				return err
			}
			cfg := admission.Config{Policy: pol, Platform: platform, PlatformPolicy: platformPolicy, Registry: client, Deadline: deadline}
			if pp.trust.enabled() {
				root, err := pp.trust.open(cmd.Context())
				if err != nil {
					return err
				}
				tk := admission.TrustKeys{Client: root.Client()}
				cfg.Keys, cfg.TrustVersion = tk, tk.Version
			}
			d, err := admission.NewDecider(cfg)
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
	c.Flags().StringVar(&policyPath, "policy", "", "admission policy file (YAML or JSON)")
	c.Flags().StringVar(&platform, "platform", "", "this cluster's platform name (for encrypted images)")
	c.Flags().StringVar(&pullPolicy, "pull-policy", "", "the container's imagePullPolicy (encrypted images need Always)")
	c.Flags().DurationVar(&deadline, "deadline", admission.DefaultDeadline, "bound on the decision, as the webhook's")
	pp.add(c)
	reg.add(c)
	return c
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
