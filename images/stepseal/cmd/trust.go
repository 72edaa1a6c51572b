package cmd

import "github.com/spf13/cobra"

// newTrust is `stepseal trust`: the repository side (trust_repo.go: init,
// delegate, sign, rotate, revoke, accept, publish, serve) and the client
// (trust_client.go: status, resolve, fetch).
func newTrust(ro *rootOptions) *cobra.Command {
	c := &cobra.Command{Use: "trust", Short: "TUF trust: the repository that delegates artifacts to teams, and its clients"}
	c.AddCommand(newTrustInit(ro), newTrustDelegate(ro), newTrustSign(ro), newTrustRotate(ro), newTrustRevoke(ro),
		newTrustAccept(ro), newTrustResign(ro), newTrustPublish(ro), newTrustServe(ro), newTrustStatus(ro), newTrustResolve(ro), newTrustFetch(ro))
	return c
}
