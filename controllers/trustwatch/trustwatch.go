package trustwatch

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/oci"
	"github.com/stepseal/stepseal/pkg/policy"
	"github.com/stepseal/stepseal/pkg/publish"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/trust"
	"github.com/stepseal/stepseal/pkg/trust/repo"
	"github.com/stepseal/stepseal/pkg/trustroot"
)

// Event reasons.
const (
	ReasonUpdated      = "TrustUpdated"
	ReasonKeyRevoked   = "TrustKeyRevoked"
	ReasonExpiringSoon = "TrustExpiringSoon"
	ReasonFailed       = "TrustRefreshFailed"
	// ReasonArchiveFailed: an accepted metadata file could not be appended
	// to the transparency log.
	ReasonArchiveFailed = "TrustArchiveFailed"
	// ReasonResigned: the controller re-signed the online roles
	// (trust.online.*); ReasonResignFailed: it could not.
	ReasonResigned     = "TrustResigned"
	ReasonResignFailed = "TrustResignFailed"
	// ReasonFastForward: a top-level version jumped suspiciously far in
	// one refresh (trust.FastForwardJump), or the repository's versions
	// are refused as a rollback below it.
	ReasonFastForward = "TrustSuspectedFastForward"
	// ReasonStaleRecipients: a released artifact is encrypted to other
	// platforms than the current platform policy allows (a platform was
	// removed); ReasonAuditFailed: artifacts could not be checked.
	ReasonStaleRecipients = "TrustStaleRecipients"
	ReasonAuditFailed     = "TrustRecipientsUnchecked"
	// ReasonReencrypted: a stale artifact re-encrypted to the current
	// policy (trust.reencrypt.secret), its new digest to be released;
	// ReasonReencryptFailed: it could not be, or was refused.
	ReasonReencrypted     = "TrustReencrypted"
	ReasonReencryptFailed = "TrustReencryptFailed"
)

// Keys of the trust.reencrypt.secret Secret besides cosign.key and
// cosign.password (the publisher's key).
const SecretKeyDecryption = "decryption.key"

// StaleKey is the key of FloorConfigMap under which the controller keeps
// the last recipients audit (trust.recipients-policy): the policy, its
// version and the stale artifacts — what the owning teams must
// re-encrypt and release.
const StaleKey = "stale-recipients.json"

// maxTargetsInEvent bounds the target paths a TrustUpdated Event names.
const maxTargetsInEvent = 10

// Instrument names (OpenTelemetry; the Prometheus exporter adds the unit
// and _total suffixes).
const (
	NameExpiry   = "stepseal.trust.expiry"
	NameFailures = "stepseal.trust.refresh.failures"
	// NameResigns counts re-signings of the online roles, by result
	// ("resigned" or "failed").
	NameResigns = "stepseal.trust.resigns"
	// NameEvents counts the Events recorded, by reason (one series per
	// kind of change: TrustUpdated, TrustKeyRevoked, TrustExpiringSoon,
	// TrustRefreshFailed, …).
	NameEvents = "stepseal.trust.events"
)

// Options configure a Watcher.
type Options struct {
	// Config returns the current stepseal-config (read at every tick, so
	// trust.* changes apply without a restart).
	Config func() *settings.Config
	// Recorder and Object: where Events go (the stepseal-config ConfigMap).
	Recorder record.EventRecorder
	Object   runtime.Object
	Logger   *zap.SugaredLogger
	Meter    metric.MeterProvider
	// Archive, when set, records each metadata file a refresh accepted
	// (trust.Changes.Files, by consistent name) in the transparency log,
	// so the history of trust is auditable; it returns an error when it
	// could not, and a file the log already holds is not an error.
	Archive func(ctx context.Context, name string, data []byte) error
	// Kube and Namespace: where the floor ConfigMap (FloorConfigMap) is
	// kept up to date after each successful refresh (nil Kube: not kept).
	Kube      kubernetes.Interface
	Namespace string
	// Registry reads an oci:// trust.url and writes an oci://
	// trust.online.publish (default: HTTPS with the docker credentials).
	Registry *oci.Client
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Watcher refreshes the trust root and reports changes. Root is safe for
// concurrent use with Run.
type Watcher struct {
	o        Options
	failures metric.Int64Counter
	resigns  metric.Int64Counter
	events   metric.Int64Counter

	// online is the online signer and what it was made from (Secret
	// UID/resourceVersion or KMS URI): the key is parsed once per version.
	onlineMu  sync.Mutex
	online    signing.Signer
	onlineKey string

	mu     sync.Mutex
	client *trust.Client
	key    string // the trust.* settings client was made for
	warned map[string]bool
	// announced: stale artifacts already announced (path@digest/policy/version);
	// auditDone: an audit ran for the current client.
	announced map[string]bool
	auditDone bool
	// reencrypted: what this process re-encrypted (reported until restart).
	reencrypted []Reencrypted
}

// New returns a Watcher; its instruments are registered on o.Meter.
func New(o Options) (*Watcher, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop().Sugar()
	}
	if o.Meter == nil {
		o.Meter = noop.NewMeterProvider()
	}
	w := &Watcher{o: o, warned: map[string]bool{}, announced: map[string]bool{}}
	m := o.Meter.Meter("github.com/stepseal/stepseal/controllers/trustwatch")
	var err error
	if w.failures, err = m.Int64Counter(NameFailures, metric.WithDescription("TUF refreshes that failed"), metric.WithUnit("{refresh}")); err != nil {
		return nil, err
	}
	if w.events, err = m.Int64Counter(NameEvents, metric.WithDescription("TUF trust Events recorded, by reason"), metric.WithUnit("{event}")); err != nil {
		return nil, err
	}
	if w.resigns, err = m.Int64Counter(NameResigns, metric.WithDescription("Re-signings of the TUF online roles (timestamp, snapshot)"), metric.WithUnit("{resign}")); err != nil {
		return nil, err
	}
	_, err = m.Float64ObservableGauge(NameExpiry, metric.WithDescription("Seconds until each trusted TUF role expires (negative: expired)"), metric.WithUnit("s"),
		metric.WithFloat64Callback(func(ctx context.Context, obs metric.Float64Observer) error {
			c := w.current()
			if c == nil {
				return nil
			}
			now := w.o.Now()
			for _, r := range c.Status(ctx).Roles {
				obs.Observe(r.Expires.Sub(now).Seconds(), metric.WithAttributes(attribute.String("role", r.Role)))
			}
			return nil
		}))
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Watcher) current() *trust.Client {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.client
}

// Root is the trust root as last verified (nil before any state could be
// verified, or when no repository is configured).
func (w *Watcher) Root() *trustroot.Root {
	c := w.current()
	if c == nil || !c.Status(context.Background()).Trusted {
		return nil
	}
	return trustroot.New(c)
}

// Run refreshes at once and then every trust.refresh-interval until ctx
// ends; a change of the trust.* settings (the ConfigMap arriving after
// start, a new URL) is picked up within pollInterval and refreshed at once.
func (w *Watcher) Run(ctx context.Context) {
	var last time.Time
	var lastKey string
	for {
		cfg := w.o.Config().Trust
		key := clientKey(cfg)
		if cfg.Enabled() && (key != lastKey || w.o.Now().Sub(last) >= cfg.Interval) {
			if err := w.Refresh(ctx); err != nil {
				w.o.Logger.Warnw("TUF refresh failed", "error", err)
			}
			last = w.o.Now()
		}
		lastKey = key
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(cfg.Interval, pollInterval)):
		}
	}
}

// pollInterval bounds how long a change of the trust.* settings waits.
var pollInterval = 10 * time.Second

// Refresh runs one refresh and records its Events and metrics. With no
// trust.url it does nothing.
func (w *Watcher) Refresh(ctx context.Context) error {
	cfg := w.o.Config().Trust
	if !cfg.Enabled() {
		return nil
	}
	c, err := w.clientFor(ctx, cfg)
	if err != nil {
		w.fail(ctx, cfg, nil, err)
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, max(cfg.Interval, time.Minute))
	defer cancel()
	ch, err := c.Refresh(rctx)
	if err != nil {
		w.fail(ctx, cfg, c, err)
		return err
	}
	// Re-sign before reporting, so that a timestamp about to be re-signed
	// is not announced as expiring; the new state is refreshed like any.
	var after *trust.Changes
	if cfg.Online.Enabled() && w.keepAlive(rctx, cfg, c) {
		if after, err = c.Refresh(rctx); err != nil {
			w.fail(ctx, cfg, c, err)
		}
	}
	w.report(ctx, cfg, c, ch)
	if after != nil {
		w.report(ctx, cfg, c, after)
	}
	w.writeFloor(ctx, c)
	w.archive(ctx, ch)
	if after != nil {
		w.archive(ctx, after)
	}
	if cfg.RecipientsPolicy != "" && (ch.Updated || !w.audited()) {
		w.auditRecipients(rctx, cfg, c)
	}
	return err
}

func (w *Watcher) audited() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.auditDone
}

// StaleReport is what StaleKey holds.
type StaleReport struct {
	Policy        string               `json:"policy"`
	PolicyVersion int64                `json:"policyVersion"`
	Checked       int                  `json:"checked"`
	Stale         []trustroot.Released `json:"stale"`
	Unchecked     []string             `json:"unchecked,omitempty"`
	// Reencrypted are the stale artifacts the controller re-encrypted
	// (trust.reencrypt.secret): the team of Role must release New for
	// Path; until then TUF vouches for Old and verifiers refuse the tag.
	Reencrypted []Reencrypted `json:"reencrypted,omitempty"`
}

// Reencrypted is one artifact re-encrypted to the current policy.
type Reencrypted struct {
	Path      string   `json:"path"`
	Role      string   `json:"role"`
	Old       string   `json:"old"`
	New       string   `json:"new"`
	Platforms []string `json:"platforms"`
}

// auditRecipients checks every released artifact TUF vouches for against
// the platform policy TUF vouches for (trustroot.AuditRecipients: the
// recipients in each vouched manifest, no key needed). Each artifact
// still encrypted to a platform the policy no longer allows is a Warning
// Event (once per artifact digest and policy version) saying what its
// team must do; the result is kept under StaleKey in FloorConfigMap. The
// controller re-encrypts nothing: the owning team's role must release the
// new digest.
func (w *Watcher) auditRecipients(ctx context.Context, cfg settings.Trust, c *trust.Client) {
	root := trustroot.New(c)
	pol, doc, err := root.Policy(ctx, cfg.RecipientsPolicy)
	if err != nil {
		w.event(corev1.EventTypeWarning, ReasonAuditFailed, fmt.Sprintf("the recipients of released artifacts could not be checked: platform policy %s: %v", cfg.RecipientsPolicy, err))
		return
	}
	reg := w.o.Registry
	if reg == nil {
		if reg, err = oci.New(oci.WithProgress(nil)); err != nil {
			w.event(corev1.EventTypeWarning, ReasonAuditFailed, fmt.Sprintf("the recipients of released artifacts could not be checked: %v", err))
			return
		}
	}
	rel, refused, err := root.AuditRecipients(ctx, reg, pol)
	if err != nil {
		w.event(corev1.EventTypeWarning, ReasonAuditFailed, fmt.Sprintf("the recipients of released artifacts could not be checked against %s v%d: %v", doc.Path, pol.Version, err))
		return
	}
	rep := StaleReport{Policy: pol.Name, PolicyVersion: pol.Version, Checked: len(rel), Stale: trustroot.Stale(rel)}
	if rep.Stale == nil {
		rep.Stale = []trustroot.Released{}
	}
	for _, r := range rel {
		if r.Error != "" {
			rep.Unchecked = append(rep.Unchecked, r.Path+": "+r.Error)
		}
	}
	for _, e := range refused {
		rep.Unchecked = append(rep.Unchecked, e.Error())
	}
	w.mu.Lock()
	w.auditDone = true
	var fresh []trustroot.Released
	for _, s := range rep.Stale {
		k := fmt.Sprintf("%s@%s/%s/%d", s.Path, s.Ref, pol.Name, pol.Version)
		if !w.announced[k] {
			w.announced[k] = true
			fresh = append(fresh, s)
		}
	}
	w.mu.Unlock()
	// Re-encrypted earlier by this process and still awaiting release
	// (TUF still vouches for the old digest).
	w.mu.Lock()
	for _, re := range w.reencrypted {
		for _, s := range rep.Stale {
			if s.Path == re.Path && s.Ref == re.Old {
				rep.Reencrypted = append(rep.Reencrypted, re)
			}
		}
	}
	w.mu.Unlock()
	for _, s := range fresh {
		if cfg.ReencryptSecret != "" {
			if re := w.reencrypt(ctx, cfg, reg, pol, s); re != nil {
				rep.Reencrypted = append(rep.Reencrypted, *re)
				w.mu.Lock()
				w.reencrypted = append(w.reencrypted, *re)
				w.mu.Unlock()
			}
		}
		w.event(corev1.EventTypeWarning, ReasonStaleRecipients, fmt.Sprintf("released artifact %s (%s, vouched for by TUF role %s v%d) is encrypted to recipients platform policy %q v%d (%s) does not allow: %s; re-encrypt it to the current policy (stepseal crypt rotate --trust … --platform-policy %s) and have role %s release the new digest",
			s.Path, s.Ref, s.Role, s.RoleVersion, pol.Name, pol.Version, doc.Path, s.Mismatch, cfg.RecipientsPolicy, s.Role))
	}
	if len(rep.Unchecked) > 0 {
		w.event(corev1.EventTypeWarning, ReasonAuditFailed, fmt.Sprintf("%d released artifacts could not be checked against %s v%d, e.g. %s", len(rep.Unchecked), doc.Path, pol.Version, rep.Unchecked[0]))
	}
	w.writeStale(ctx, rep)
}

// reencrypt re-encrypts the stale artifact s to pol with the keys of the
// trust.reencrypt.secret Secret (publish.Rotate: the image must be signed
// by the publisher's key; decrypted with a platform still authorized;
// fresh content keys; signed and attested again; the old manifest kept,
// since TUF still vouches for it). Only the digest TUF vouches for is
// re-encrypted: a tag that moved elsewhere is refused. It returns nil on
// a failure, which is a Warning Event.
func (w *Watcher) reencrypt(ctx context.Context, cfg settings.Trust, reg *oci.Client, pol *policy.Policy, s trustroot.Released) *Reencrypted {
	fail := func(format string, args ...any) *Reencrypted {
		w.event(corev1.EventTypeWarning, ReasonReencryptFailed, fmt.Sprintf("not re-encrypting %s (%s): ", s.Path, s.Ref)+fmt.Sprintf(format, args...))
		return nil
	}
	repoTag := strings.TrimPrefix(s.Path, trustroot.OCI+"/")
	ref, err := reg.ParseReference(repoTag)
	if err != nil {
		return fail("%v", err)
	}
	tag, ok := ref.(name.Tag)
	if !ok {
		return fail("not a tag")
	}
	cur, err := reg.Resolve(ctx, tag)
	if err != nil {
		return fail("resolving the tag: %v", err)
	}
	if !strings.HasSuffix(s.Ref, "@"+cur.DigestStr()) {
		return fail("the tag now points to %s, not the digest TUF vouches for (already re-encrypted and awaiting release, or moved)", cur.DigestStr())
	}
	if w.o.Kube == nil {
		return fail("no Kubernetes client to read Secret %s", cfg.ReencryptSecret)
	}
	sec, err := w.o.Kube.CoreV1().Secrets(w.o.Namespace).Get(ctx, cfg.ReencryptSecret, metav1.GetOptions{})
	if err != nil {
		return fail("Secret %s/%s: %v", w.o.Namespace, cfg.ReencryptSecret, err)
	}
	pw := sec.Data[SecretKeyCosignPassword]
	key, err := signing.ParsePrivateKeyPEM(sec.Data[SecretKeyCosignKey], func(bool) ([]byte, error) { return pw, nil })
	if err != nil {
		return fail("Secret %s/%s %s: %v", w.o.Namespace, cfg.ReencryptSecret, SecretKeyCosignKey, err)
	}
	dk, err := signing.ParsePrivateKeyPEM(sec.Data[SecretKeyDecryption], func(bool) ([]byte, error) { return nil, nil })
	if err != nil {
		return fail("Secret %s/%s %s: %v", w.o.Namespace, cfg.ReencryptSecret, SecretKeyDecryption, err)
	}
	rot, err := publish.Rotate(ctx, reg, tag, publish.RotateOptions{Policy: pol, Key: key, DecryptionKey: dk, KeepOld: true})
	if err != nil {
		return fail("%v", err)
	}
	re := &Reencrypted{Path: s.Path, Role: s.Role, Old: rot.Old.String(), New: rot.New.String(), Platforms: rot.Platforms}
	w.event(corev1.EventTypeWarning, ReasonReencrypted, fmt.Sprintf("re-encrypted %s to platforms %v of policy %q v%d: new digest %s (old %s kept); role %s must release it (stepseal trust sign --role %s --image %s), until then verifiers refuse the tag",
		s.Path, rot.Platforms, pol.Name, pol.Version, rot.New.DigestStr(), rot.Old.DigestStr(), s.Role, s.Role, tag.String()))
	return re
}

// writeStale keeps rep under StaleKey in FloorConfigMap (best effort).
func (w *Watcher) writeStale(ctx context.Context, rep StaleReport) {
	if w.o.Kube == nil {
		return
	}
	data, err := json.Marshal(rep)
	if err != nil {
		return
	}
	cms := w.o.Kube.CoreV1().ConfigMaps(w.o.Namespace)
	cm, err := cms.Get(ctx, FloorConfigMap, metav1.GetOptions{})
	if err != nil || cm.Data[StaleKey] == string(data) {
		return
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[StaleKey] = string(data)
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		w.o.Logger.Warnw("updating the recipients audit", "configmap", FloorConfigMap, "error", err)
	}
}

// keepAlive re-signs the online roles (repo.Resign, over the state c just
// verified) when the timestamp expires within trust.online.resign-before,
// and says whether it wrote anything. A failure is a Warning Event
// (TrustResignFailed) and counted; the last verified state stays.
func (w *Watcher) keepAlive(ctx context.Context, cfg settings.Trust, c *trust.Client) bool {
	v, err := c.Verified()
	if err != nil || v.Timestamp.Signed.Expires.Sub(w.o.Now()) > cfg.Online.ResignBefore {
		return false
	}
	res, err := w.resign(ctx, cfg, c)
	if err != nil {
		w.resigns.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "failed")))
		w.event(corev1.EventTypeWarning, ReasonResignFailed, fmt.Sprintf("re-signing the TUF online roles of %s failed: %v; timestamp v%d expires %s", cfg.Online.Publish, err,
			v.Timestamp.Signed.Version, v.Timestamp.Signed.Expires.UTC().Format(time.RFC3339)))
		return false
	}
	if !res.Resigned {
		return false
	}
	w.resigns.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "resigned")))
	msg := fmt.Sprintf("re-signed TUF timestamp v%d → v%d (expires %s)", res.Timestamp.From, res.Timestamp.To, res.Timestamp.Expires.UTC().Format(time.RFC3339))
	if res.Snapshot.To != res.Snapshot.From {
		msg += fmt.Sprintf(" and snapshot v%d → v%d (expires %s)", res.Snapshot.From, res.Snapshot.To, res.Snapshot.Expires.UTC().Format(time.RFC3339))
	}
	msg += " at " + cfg.Online.Publish
	for role, why := range res.Refused {
		msg += fmt.Sprintf("; role %s does not verify (clients refuse it): %s", role, why)
	}
	w.event(corev1.EventTypeNormal, ReasonResigned, msg)
	return true
}

func (w *Watcher) resign(ctx context.Context, cfg settings.Trust, c *trust.Client) (*repo.Resigned, error) {
	s, err := w.onlineSigner(ctx, cfg.Online)
	if err != nil {
		return nil, err
	}
	return repo.Resign(ctx, repo.ResignOptions{Client: c, Refreshed: true, Dest: cfg.Online.Publish, Registry: w.o.Registry, Online: s,
		Before: cfg.Online.ResignBefore, Expiry: repo.Expiry{Timestamp: cfg.Online.TimestampExpiry, Snapshot: cfg.Online.SnapshotExpiry}, Now: w.o.Now})
}

// Keys of the online key Secret (those of the signing Secret).
const (
	SecretKeyCosignKey      = "cosign.key"
	SecretKeyCosignPassword = "cosign.password"
)

// onlineSigner returns the online key: the KMS key trust.online.kms, or
// the Secret trust.online.key-secret of the controller's namespace
// (parsed again only when the Secret changed). Errors name the Secret,
// never its content.
func (w *Watcher) onlineSigner(ctx context.Context, o settings.Online) (signing.Signer, error) {
	w.onlineMu.Lock()
	defer w.onlineMu.Unlock()
	if o.KMS != "" {
		if w.online != nil && w.onlineKey == "kms:"+o.KMS {
			return w.online, nil
		}
		s, err := signing.KMSSigner(ctx, o.KMS)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", settings.KeyTrustOnlineKMS, err)
		}
		w.online, w.onlineKey = s, "kms:"+o.KMS
		return s, nil
	}
	if w.o.Kube == nil {
		return nil, fmt.Errorf("online key Secret %s: no Kubernetes client", o.KeySecret)
	}
	sec, err := w.o.Kube.CoreV1().Secrets(w.o.Namespace).Get(ctx, o.KeySecret, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("online key Secret %s/%s: %w", w.o.Namespace, o.KeySecret, err)
	}
	k := fmt.Sprintf("secret:%s/%s", sec.UID, sec.ResourceVersion)
	if w.online != nil && w.onlineKey == k {
		return w.online, nil
	}
	pem := sec.Data[SecretKeyCosignKey]
	if len(pem) == 0 {
		return nil, fmt.Errorf("online key Secret %s/%s has no %s", w.o.Namespace, o.KeySecret, SecretKeyCosignKey)
	}
	pw := sec.Data[SecretKeyCosignPassword]
	key, err := signing.ParsePrivateKeyPEM(pem, func(bool) ([]byte, error) { return pw, nil })
	if err != nil {
		return nil, fmt.Errorf("online key Secret %s/%s: %w", w.o.Namespace, o.KeySecret, err)
	}
	s, err := signing.NewSigner(key)
	if err != nil {
		return nil, fmt.Errorf("online key Secret %s/%s: %w", w.o.Namespace, o.KeySecret, err)
	}
	w.online, w.onlineKey = s, k
	return s, nil
}

// archive hands the accepted files to Options.Archive, roots first (by
// version), then the rest by name. Best effort: a failure is a Warning
// Event, and the same files are not offered again.
func (w *Watcher) archive(ctx context.Context, ch *trust.Changes) {
	if w.o.Archive == nil || len(ch.Files) == 0 {
		return
	}
	names := make([]string, 0, len(ch.Files))
	for n := range ch.Files {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		ri, rj := strings.HasSuffix(names[i], ".root.json"), strings.HasSuffix(names[j], ".root.json")
		if ri != rj {
			return ri
		}
		return names[i] < names[j]
	})
	for _, n := range names {
		if err := w.o.Archive(ctx, n, ch.Files[n]); err != nil {
			w.event(corev1.EventTypeWarning, ReasonArchiveFailed, fmt.Sprintf("appending TUF metadata %s to the transparency log failed: %v", n, err))
		}
	}
}

// FloorConfigMap is the ConfigMap (shipped empty in the release; the
// controller may update only it) in which the controller keeps the trust
// floor (trust.Floor as JSON under FloorKey): the newest root it verified
// and the lowest role versions, for consumers without a disk of their own
// (the verify Task's pod, the admission webhook's replicas) to start from
// and to refuse anything older.
const (
	FloorConfigMap = "stepseal-trust"
	FloorKey       = "floor.json"
)

// writeFloor updates FloorConfigMap when the floor moved. Best effort: a
// failure is logged and retried at the next refresh.
func (w *Watcher) writeFloor(ctx context.Context, c *trust.Client) {
	if w.o.Kube == nil {
		return
	}
	fl := c.FloorOf()
	if fl == nil {
		return
	}
	data, err := json.Marshal(fl)
	if err != nil {
		return
	}
	cms := w.o.Kube.CoreV1().ConfigMaps(w.o.Namespace)
	cm, err := cms.Get(ctx, FloorConfigMap, metav1.GetOptions{})
	if err != nil {
		w.o.Logger.Warnw("reading the trust floor ConfigMap (the release ships it empty)", "configmap", FloorConfigMap, "error", err)
		return
	}
	if cm.Data[FloorKey] == string(data) {
		return
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[FloorKey] = string(data)
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		w.o.Logger.Warnw("updating the trust floor ConfigMap", "configmap", FloorConfigMap, "error", err)
	}
}

// clientKey is what a client is made of: when it changes, a new one is.
func clientKey(cfg settings.Trust) string {
	return strings.Join([]string{cfg.URL, cfg.Root, cfg.CacheDir}, "\x00")
}

// clientFor returns the client for the current settings, made anew (and
// its cache loaded, so the last trusted state holds while the repository
// is down) when they changed.
func (w *Watcher) clientFor(ctx context.Context, cfg settings.Trust) (*trust.Client, error) {
	key := clientKey(cfg)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.client != nil && w.key == key {
		return w.client, nil
	}
	o := trust.ClientOptions{Source: cfg.URL, CacheDir: cfg.CacheDir, Now: w.o.Now, Registry: w.o.Registry}
	if cfg.Root != "" {
		root := []byte(cfg.Root)
		if !strings.HasPrefix(cfg.Root, "{") {
			var err error
			if root, err = os.ReadFile(cfg.Root); err != nil {
				return nil, fmt.Errorf("%s: %w", settings.KeyTrustRoot, err)
			}
		}
		o.BootstrapRoot = root
	}
	c, err := trust.NewClient(ctx, o)
	if err != nil {
		return nil, err
	}
	// Best effort: a cache that does not verify (none yet, or expired) is
	// simply not trusted; the refresh decides.
	_ = c.LoadCache(ctx)
	w.client, w.key = c, key
	w.warned = map[string]bool{}
	w.auditDone = false
	return c, nil
}

func (w *Watcher) event(typ, reason, msg string) {
	w.events.Add(context.Background(), 1, metric.WithAttributes(attribute.String("reason", reason)))
	if w.o.Recorder != nil && w.o.Object != nil {
		w.o.Recorder.Event(w.o.Object, typ, reason, msg)
	}
	w.o.Logger.Infow(msg, "reason", reason)
}

func (w *Watcher) fail(ctx context.Context, cfg settings.Trust, c *trust.Client, err error) {
	w.failures.Add(ctx, 1)
	msg := fmt.Sprintf("refreshing TUF metadata from %s failed: %v", cfg.URL, err)
	if c != nil {
		st := c.Status(ctx)
		if st.SuspectedFastForward != "" {
			w.event(corev1.EventTypeWarning, ReasonFastForward, "suspected fast-forward of "+cfg.URL+": "+st.SuspectedFastForward)
		}
		if st.Trusted {
			msg += "; the last verified state stays in force until it expires (" + earliestExpiry(st, w.o.Now()) + ")"
		} else {
			msg += "; nothing is trusted yet"
		}
	}
	w.event(corev1.EventTypeWarning, ReasonFailed, msg)
}

// earliestExpiry names the role of st that expires first.
func earliestExpiry(st *trust.Status, now time.Time) string {
	var first *trust.RoleStatus
	for i := range st.Roles {
		if first == nil || st.Roles[i].Expires.Before(first.Expires) {
			first = &st.Roles[i]
		}
	}
	if first == nil {
		return "unknown"
	}
	return fmt.Sprintf("%s v%d expires %s, in %s", first.Role, first.Version, first.Expires.UTC().Format(time.RFC3339), first.Expires.Sub(now).Round(time.Second))
}

func (w *Watcher) report(ctx context.Context, cfg settings.Trust, c *trust.Client, ch *trust.Changes) {
	if ch.Updated {
		var parts []string
		add := func(role string, v trust.VersionChange) {
			if v.From != v.To {
				parts = append(parts, fmt.Sprintf("%s v%d → v%d", role, v.From, v.To))
			}
		}
		add("root", ch.Root)
		add("targets", ch.Targets)
		for _, r := range ch.Roles {
			add(r.Role, r.VersionChange)
		}
		add("snapshot", ch.Snapshot)
		add("timestamp", ch.Timestamp)
		msg := "TUF metadata updated from " + cfg.URL + ": " + strings.Join(parts, ", ")
		// Which target paths changed: the top-level targets' always,
		// delegated roles' that the controller had loaded (by lookups)
		// before the refresh, loaded again along the same delegations.
		if err := c.LoadChanged(ctx, ch); err != nil {
			w.o.Logger.Warnw("loading the changed TUF roles", "error", err)
		}
		c.TargetChanges(ch)
		if n := len(ch.TargetChanges); n > 0 {
			var tc []string
			for i, t := range ch.TargetChanges {
				if i == maxTargetsInEvent {
					tc = append(tc, fmt.Sprintf("and %d more", n-i))
					break
				}
				d := t.ToSHA256
				if t.Change == "removed" {
					d = t.FromSHA256
				}
				tc = append(tc, fmt.Sprintf("%s %s %s (sha256 %.12s)", t.Role, t.Change, t.Path, d))
			}
			msg += "; targets: " + strings.Join(tc, ", ")
		}
		if ch.SuspectedFastForward != "" {
			w.event(corev1.EventTypeWarning, ReasonFastForward, "suspected fast-forward of "+cfg.URL+": "+ch.SuspectedFastForward)
		}
		w.event(corev1.EventTypeNormal, ReasonUpdated, msg)
	}
	for _, k := range ch.Keys {
		if k.Change == "removed" {
			w.event(corev1.EventTypeWarning, ReasonKeyRevoked, fmt.Sprintf("TUF key %s removed from top-level role %s in root v%d", k.KeyID, k.Role, ch.Root.To))
		}
	}
	st := c.Status(ctx)
	paths := map[string]string{}
	for _, r := range st.Roles {
		paths[r.Role] = strings.Join(r.Paths, " ")
	}
	for _, d := range ch.Delegations {
		switch d.Change {
		case "key-revoked", "key-removed":
			msg := fmt.Sprintf("TUF key %s %s from role %s by %s %s", d.KeyID, strings.TrimPrefix(d.Change, "key-"), d.Role, d.Delegator, d.Detail)
			if p := paths[d.Role]; p != "" {
				msg += "; affects " + p
			}
			w.event(corev1.EventTypeWarning, ReasonKeyRevoked, msg)
		}
	}
	now := w.o.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range st.Roles {
		left := r.Expires.Sub(now)
		k := fmt.Sprintf("%s/%d", r.Role, r.Version)
		if left < cfg.ExpiryWarning && !w.warned[k] {
			w.warned[k] = true
			w.event(corev1.EventTypeWarning, ReasonExpiringSoon, fmt.Sprintf("TUF role %s v%d expires %s, in %s: re-sign it before then, or every verifier refuses it", r.Role, r.Version, r.Expires.UTC().Format(time.RFC3339), left.Round(time.Second)))
		}
	}
}
