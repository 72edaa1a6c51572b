package kubetest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// PodAuditPolicy is an audit policy for tests of admission: every request
// on Pods (and their subresources) at level Metadata, which carries the
// admission webhooks' audit annotations; nothing else.
const PodAuditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  resources:
  - group: ""
    resources: ["pods", "pods/ephemeralcontainers"]
- level: None
`

// AuditEvent is the part of an audit.k8s.io/v1 Event tests look at.
type AuditEvent struct {
	AuditID   string `json:"auditID"`
	Stage     string `json:"stage"`
	Verb      string `json:"verb"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Annotations map[string]string `json:"annotations"`
}

// ErrNoAudit: the cluster was launched without Options.AuditPolicy.
var ErrNoAudit = errors.New("kubetest: the cluster has no audit log (Options.AuditPolicy)")

// AuditEvents reads the audit log and returns the events keep accepts.
func (c *Cluster) AuditEvents(keep func(AuditEvent) bool) ([]AuditEvent, error) {
	if !c.audit {
		return nil, ErrNoAudit
	}
	f, err := os.Open(filepath.Join(c.dir, "audit.log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEvent
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for s.Scan() {
		var e AuditEvent
		if err := json.Unmarshal(s.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("audit.log: %w", err)
		}
		if keep == nil || keep(e) {
			out = append(out, e)
		}
	}
	return out, s.Err()
}
