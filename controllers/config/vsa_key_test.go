package config

import (
	"context"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepseal/stepseal/controllers/settings"
)

// TestVerifierKeyOutOfTenantReach: with the release applied (RBAC on), the
// VSA verifier key's Secret (vsa.secret, in the controller's namespace) can
// be read by the controller's ServiceAccount and by no tenant's: a tenant
// ServiceAccount that is admin of its own namespace — the identity a
// tenant's TaskRun Pods run as — can neither get, list nor watch Secrets in
// the controller's namespace (SubjectAccessReviews), so no step of a tenant
// can mount or read the key and sign a VSA.
func TestVerifierKeyOutOfTenantReach(t *testing.T) {
	s := setUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tenant := s.cluster.Namespace(t)
	// Admin of its namespace (the "admin" ClusterRole's rules are
	// aggregated by a controller manager this API has not: the same rule
	// for Secrets, spelled out).
	if _, err := s.kube.RbacV1().Roles(tenant).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-admin", Namespace: tenant},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"*"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.kube.RbacV1().RoleBindings(tenant).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-admin", Namespace: tenant},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: tenant}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "tenant-admin"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := settings.Defaults().VSA.Secret
	can := func(user, ns, verb, name string) bool {
		t.Helper()
		groups := []string{"system:serviceaccounts", "system:authenticated"}
		r, err := s.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: "secrets", Name: name}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	tenantSA := "system:serviceaccount:" + tenant + ":default"
	// The tenant is admin at home (the reviews do answer "allowed"), once
	// the apiserver's RBAC authorizer has seen the new RoleBinding: its
	// informer lags a create by a moment...
	deadline := time.Now().Add(15 * time.Second)
	for !can(tenantSA, tenant, "get", "anything") {
		if time.Now().After(deadline) {
			t.Fatalf("%s cannot read Secrets of its own namespace: the review is not what it seems", tenantSA)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// ...and reaches nothing of the controller's namespace.
	for _, verb := range []string{"get", "list", "watch"} {
		name := secret
		if verb != "get" {
			name = ""
		}
		if can(tenantSA, systemNS, verb, name) {
			t.Errorf("%s may %s the verifier key Secret %s/%s", tenantSA, verb, systemNS, secret)
		}
	}
	if !can(saUser, systemNS, "get", secret) {
		t.Errorf("the controller's ServiceAccount cannot get %s/%s", systemNS, secret)
	}
}
