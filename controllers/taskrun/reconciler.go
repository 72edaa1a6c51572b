package taskrun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	listers "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/reconciler"

	"github.com/stepseal/stepseal/controllers/metrics"
	"github.com/stepseal/stepseal/controllers/settings"
	"github.com/stepseal/stepseal/pkg/attest"
	"github.com/stepseal/stepseal/pkg/run"
	"github.com/stepseal/stepseal/pkg/signing"
	"github.com/stepseal/stepseal/pkg/store"
)

// Annotations and finalizer the controller writes on TaskRuns.
const (
	// AnnotationSigned is "true" once every backend accepted the TaskRun's
	// attestations, "failed" once signing was given up.
	AnnotationSigned = "stepseal.dev/signed"
	// AnnotationError is the last error, on a failed TaskRun.
	AnnotationError = "stepseal.dev/error"
	// AnnotationRetries is the number of failed attempts, on a failed TaskRun.
	AnnotationRetries = "stepseal.dev/retries"
	// Finalizer holds a finished TaskRun until it is signed (or given up),
	// so one deleted right after finishing is still signed.
	Finalizer = "stepseal.dev/taskrun"
	// PipelineRunFinalizer holds a finished PipelineRun until its run-level
	// provenance is signed (or given up), the same way.
	PipelineRunFinalizer = "stepseal.dev/pipelinerun"
)

// Secret keys of the signing Secret, the ones Tekton Chains' signing-secrets uses.
const (
	SecretKeyCosignKey      = "cosign.key"
	SecretKeyCosignPassword = "cosign.password"
)

// Reconciler attests finished TaskRuns. It is a knative controller.Reconciler
// driven by a key queue, not the generated TaskRun reconciler: that one adds
// its finalizer to every TaskRun it sees and removes it only on deletion,
// while stepseal removes it as soon as a TaskRun is signed (so uninstalling
// stepseal never blocks deletions of signed TaskRuns), and must still be
// called for TaskRuns being deleted.
//
// One reconcile of a finished TaskRun not yet signed:
//
//  0. a TaskRun not yet finished gets the finalizer as soon as the
//     controller sees it (so a TaskRun deleted right after it finishes,
//     before its turn in the queue, is still signed); one deleted before
//     it finished has it removed again, unsigned;
//  1. add the finalizer if it is missing (unless the TaskRun is already
//     being deleted);
//  2. build the run.Record (FromTaskRun);
//  3. sign one in-toto link per step and the SLSA v1 provenance, reusing the
//     exact bytes an earlier, interrupted attempt stored, so a retry never
//     stores a second copy (ECDSA signatures differ on every signing);
//  4. Put every entry into every backend;
//  5. only then annotate stepseal.dev/signed=true and remove the finalizer.
//
// A failure is retried with exponential backoff; after MaxRetries attempts,
// or at once for a TaskRun that cannot be attested (ErrNothingRan,
// ErrMalformed), the TaskRun is annotated signed=failed with the error and
// the number of attempts, the finalizer removed and a Warning Event emitted.
//
// It is leader-aware (reconciler.LeaderAware): with knative's leader
// election a replica reconciles only keys of the buckets whose Lease it
// holds, and enqueues all of a bucket's pending keys when promoted.
type Reconciler struct {
	Tekton          versioned.Interface
	Lister          listers.TaskRunLister
	Secrets         corelisters.SecretLister // Secrets of SystemNamespace
	SystemNamespace string
	Config          *settings.Store
	Recorder        record.EventRecorder
	// OpenBackends opens the backends of a Config; nil means the configured ones.
	OpenBackends func(*settings.Config) ([]Backend, error)
	// Metrics records outcomes; nil records nothing.
	Metrics *metrics.Recorder
	// Shared is the process's signer cache and open stores (NewShared);
	// without it Signer and Backends (unless OpenBackends) fail.
	Shared *Shared

	leader   reconciler.LeaderAwareFuncs
	attempts Attempts
}

var (
	_ controller.Reconciler  = (*Reconciler)(nil)
	_ reconciler.LeaderAware = (*Reconciler)(nil)
)

// Promote implements reconciler.LeaderAware: this replica now leads bucket
// b, so every TaskRun of b that needs work is enqueued. knative's Impl calls
// it from its elector (an unopposed one, with every key in one bucket, when
// leader election is off).
func (r *Reconciler) Promote(b reconciler.Bucket, enq func(reconciler.Bucket, types.NamespacedName)) error {
	return PromoteAll(&r.leader, b, enq, func() ([]*v1.TaskRun, error) { return r.Lister.List(labels.Everything()) }, NeedsWork)
}

// PromoteAll is the Promote of a leader-aware reconciler over a lister: it
// promotes b and enqueues every listed object of b for which needsWork holds.
func PromoteAll[T interface {
	GetNamespace() string
	GetName() string
}](leader *reconciler.LeaderAwareFuncs, b reconciler.Bucket, enq func(reconciler.Bucket, types.NamespacedName), list func() ([]T, error), needsWork func(any) bool) error {
	if err := leader.Promote(b, nil); err != nil {
		return err
	}
	if enq == nil {
		return nil
	}
	all, err := list()
	if err != nil {
		return err
	}
	for _, o := range all {
		nn := types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
		if needsWork(o) && b.Has(nn) {
			enq(b, nn)
		}
	}
	return nil
}

// Demote implements reconciler.LeaderAware: keys of b are left to the
// replica that leads it now.
func (r *Reconciler) Demote(b reconciler.Bucket) { r.leader.Demote(b) }

// Lookup is how both reconcilers begin with key: nothing to do (found false)
// unless this replica leads the key's bucket — two replicas must never both
// sign, ECDSA signatures differ, so both would be stored — and the object is
// still in the cache (get, a lister's Get). The context it returns logs with
// noun=key.
func Lookup[T any](ctx context.Context, key, noun string, leader *reconciler.LeaderAwareFuncs, get func(ns, name string) (T, error)) (_ context.Context, obj T, found bool, err error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return ctx, obj, false, controller.NewPermanentError(err)
	}
	if !leader.IsLeaderFor(types.NamespacedName{Namespace: ns, Name: name}) {
		return ctx, obj, false, nil
	}
	ctx = logging.WithLogger(ctx, logging.FromContext(ctx).With(zap.String(noun, key)))
	obj, err = get(ns, name)
	if apierrors.IsNotFound(err) {
		return ctx, obj, false, nil
	}
	return ctx, obj, err == nil, err
}

// NeedsWork is the informer filter: TaskRuns not yet signed or failed
// (running ones get the finalizer, finished ones are signed), and any
// TaskRun still holding the finalizer.
func NeedsWork(obj any) bool {
	tr, ok := obj.(*v1.TaskRun)
	if !ok {
		return false
	}
	return hasFinalizer(tr) || !IsDecided(tr.Annotations)
}

// Reconcile implements controller.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, key string) error {
	ctx, cached, found, err := Lookup(ctx, key, "taskrun", &r.leader, func(ns, name string) (*v1.TaskRun, error) {
		return r.Lister.TaskRuns(ns).Get(name)
	})
	if !found {
		return err
	}
	logger := logging.FromContext(ctx)
	tr := cached.DeepCopy()
	cfg := r.Config.Load()

	switch tr.Annotations[AnnotationSigned] {
	case "true", "failed":
		if hasFinalizer(tr) {
			_, err := r.patch(ctx, tr, nil, false)
			return ignoreNotFound(err)
		}
		return nil
	}
	if tr.DeletionTimestamp == nil && !hasFinalizer(tr) {
		// Held from the moment we see it, so deleting it right after it
		// finishes — before its turn in the queue — cannot lose it.
		if tr, err = r.patch(ctx, tr, nil, true); err != nil {
			return ignoreNotFound(err)
		}
	}
	if !tr.IsDone() {
		if tr.DeletionTimestamp != nil && hasFinalizer(tr) {
			// Deleted before it finished: nothing ran to the end to attest,
			// and holding it would block the deletion for ever.
			_, err := r.patch(ctx, tr, nil, false)
			return ignoreNotFound(err)
		}
		return nil
	}

	n, logIndex, err := r.attestAndStore(ctx, tr, cfg)
	if err == nil {
		r.attempts.Forget(tr.UID)
		_, err = r.patch(ctx, tr, map[string]*string{
			AnnotationSigned: ptr("true"), AnnotationError: nil, AnnotationRetries: nil,
			AnnotationLogIndex: nonEmpty(logIndex),
		}, false)
		if err != nil {
			return ignoreNotFound(err)
		}
		r.Metrics.Signed(ctx, metrics.KindTaskRun, completedAt(tr), time.Now())
		logger.Infow("signed", "entries", n, "backends", cfg.Backends)
		return nil
	}

	permanent := errors.Is(err, ErrNothingRan) || errors.Is(err, ErrMalformed)
	return r.attempts.Failed(ctx, tr, metrics.KindTaskRun, err, permanent, cfg, r.Recorder, r.Metrics, func(a map[string]*string) error {
		_, err := r.patch(ctx, tr, a, false)
		return err
	})
}

// attestAndStore signs and stores the TaskRun's links and provenance and
// returns how many entries every backend accepted, and the transparency-log
// index of the provenance when a "tlog" backend is configured.
func (r *Reconciler) attestAndStore(ctx context.Context, tr *v1.TaskRun, cfg *settings.Config) (n int, logIndex string, err error) {
	logger := logging.FromContext(ctx)
	built, err := FromTaskRun(tr)
	if err != nil {
		return 0, "", err
	}
	for _, w := range built.Warnings {
		logger.Infow("status part not attested", "reason", w)
	}
	backends, err := r.Backends(ctx, cfg)
	if err != nil {
		return 0, "", err
	}
	if len(backends) == 0 {
		return 0, "", errors.New("no storage backend configured: nothing would be stored")
	}
	signer, err := r.Signer(ctx, tr.Namespace, cfg)
	if err != nil {
		return 0, "", err
	}
	keyID, err := signer.KeyID()
	if err != nil {
		return 0, "", err
	}
	rec := built.Record

	// What an interrupted earlier attempt stored. Only a TaskRun that
	// already carries the finalizer can have one, so fresh TaskRuns skip
	// the lookup.
	previous := map[string]store.Entry{}
	if hasFinalizer(tr) {
		for _, b := range backends {
			if b.Store == nil {
				continue
			}
			es, err := b.Store.List(ctx, store.Filter{RunID: rec.RunID})
			if err != nil {
				return 0, "", fmt.Errorf("backend %s: listing run %s: %w", b.Name, rec.RunID, err)
			}
			for _, e := range es {
				if _, ok := previous[e.Kind+"/"+e.Name]; !ok {
					previous[e.Kind+"/"+e.Name] = e
				}
			}
		}
	}

	var entries []store.Entry
	links := run.Artifacts{}
	for _, step := range rec.AllSteps() {
		link := attest.Link(rec, step)
		fileName := attest.LinkFileName(step.Name, keyID)
		data, ok := reusableLink(previous[store.KindLink+"/"+fileName], link)
		if !ok {
			mb, err := attest.SignLink(ctx, link, signer)
			if err != nil {
				return 0, "", err
			}
			if data, err = json.MarshalIndent(mb, "", "  "); err != nil {
				return 0, "", fmt.Errorf("link of step %s: %w", step.Name, err)
			}
		}
		entries = append(entries, store.Entry{
			Kind: store.KindLink, Name: fileName, RunID: rec.RunID, Subjects: sha256Subjects(step.Products), Data: data,
		})
		links[fileName] = run.DigestSet{"sha256": hexSHA256(data)}
	}

	// Provenance needs a subject: the declared outputs, else the products
	// of the last step. A TaskRun with neither gets links only.
	steps := rec.AllSteps()
	if len(built.Subjects) > 0 || len(steps[len(steps)-1].Products) > 0 {
		opts := attest.ProvenanceOptions{Subjects: built.Subjects, BuilderID: cfg.BuilderID, Links: links}
		st, err := attest.Provenance(rec, opts)
		if err != nil {
			return 0, "", err
		}
		name := fmt.Sprintf("%s/%s.%.8s.provenance", tr.Namespace, tr.Name, keyID)
		data, ok := ReusableStatement(previous[store.KindProvenance+"/"+name], st)
		if !ok {
			env, err := attest.SignStatement(ctx, st, signer)
			if err != nil {
				return 0, "", fmt.Errorf("signing provenance: %w", err)
			}
			if data, err = json.Marshal(env); err != nil {
				return 0, "", err
			}
		}
		var subjects []string
		for _, s := range st.Subject {
			if d, ok := s.Digest["sha256"]; ok {
				subjects = append(subjects, "sha256:"+d)
			}
		}
		entries = append(entries, store.Entry{
			Kind: store.KindProvenance, Name: name, RunID: rec.RunID, Subjects: subjects, Data: data,
		})
	} else {
		logger.Infow("no provenance: the TaskRun declared no output and its last step has no product")
	}

	if logIndex, err = PutAll(ctx, backends, entries); err != nil {
		return 0, "", err
	}
	// Image outputs get the provenance (the last entry when there is one).
	if last := entries[len(entries)-1]; len(built.Images) > 0 && last.Kind == store.KindProvenance {
		var env dsse.Envelope
		if err := json.Unmarshal(last.Data, &env); err != nil {
			return 0, "", fmt.Errorf("provenance %s: %w", last.Name, err)
		}
		for _, b := range backends {
			if b.Images == nil {
				continue
			}
			for _, img := range built.Images {
				if err := b.Images.Attach(ctx, img, &env); err != nil {
					return 0, "", fmt.Errorf("backend %s: attaching provenance to %s: %w", b.Name, img, err)
				}
			}
		}
	}
	return len(entries), logIndex, nil
}

// reusableLink returns the stored bytes of prev when they are a signed
// Metablock of exactly link.
func reusableLink(prev store.Entry, link in_toto.Link) ([]byte, bool) {
	if len(prev.Data) == 0 {
		return nil, false
	}
	var old in_toto.Metablock
	if err := json.Unmarshal(prev.Data, &old); err != nil || len(old.Signatures) == 0 {
		return nil, false
	}
	a, err1 := old.GetSignableRepresentation()
	b, err2 := (&in_toto.Metablock{Signed: link}).GetSignableRepresentation()
	if err1 != nil || err2 != nil || string(a) != string(b) {
		return nil, false
	}
	return prev.Data, true
}

// ReusableStatement returns the stored bytes of prev when they are a signed
// DSSE envelope of exactly st.
func ReusableStatement(prev store.Entry, st *intoto.Statement) ([]byte, bool) {
	if len(prev.Data) == 0 {
		return nil, false
	}
	var env dsse.Envelope
	if err := json.Unmarshal(prev.Data, &env); err != nil || len(env.Signatures) == 0 {
		return nil, false
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, false
	}
	old := &intoto.Statement{}
	if err := protojson.Unmarshal(payload, old); err != nil || !proto.Equal(old, st) {
		return nil, false
	}
	return prev.Data, true
}

// Signer returns the signer for TaskRuns of namespace, the first that is
// configured of: the KMS key signer.kms.<namespace>; the Secret
// "<signer.secret>-<namespace>"; the KMS key signer.kms; the Secret
// "<signer.secret>" (Secrets in the controller's namespace). Signers are
// cached in r.Shared (see signerCache).
func (r *Reconciler) Signer(ctx context.Context, namespace string, cfg *settings.Config) (signing.Signer, error) {
	if r.Shared == nil {
		return nil, errNoShared
	}
	keys := &r.Shared.signers
	if uri := cfg.NamespaceKMS[namespace]; uri != "" {
		return keys.kms(ctx, uri)
	}
	sec, err := r.Secrets.Secrets(r.SystemNamespace).Get(cfg.SignerSecret + "-" + namespace)
	if apierrors.IsNotFound(err) {
		if cfg.SignerKMS != "" {
			return keys.kms(ctx, cfg.SignerKMS)
		}
		sec, err = r.Secrets.Secrets(r.SystemNamespace).Get(cfg.SignerSecret)
	}
	if err != nil {
		return nil, fmt.Errorf("signing Secret %s/%s: %w", r.SystemNamespace, cfg.SignerSecret, err)
	}
	keyPEM := sec.Data[SecretKeyCosignKey]
	if len(keyPEM) == 0 {
		return nil, fmt.Errorf("signing Secret %s/%s has no %s", sec.Namespace, sec.Name, SecretKeyCosignKey)
	}
	s, err := keys.secret(keyPEM, sec.Data[SecretKeyCosignPassword])
	if err != nil {
		// The error names the Secret, never its content.
		return nil, fmt.Errorf("signing Secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	return s, nil
}

// signerCache caches signers for the whole process (in Shared: the TaskRun
// and PipelineRun controllers share it): cosign keys by the digest of the key file and
// password, so cosign's deliberately slow scrypt (32 MiB, ~0.2 CPU-s) runs
// once per key, not once per controller, worker or Secret version; KMS
// signers by URI, so the KMS is asked for the public key once. One
// decryption or KMS set-up runs at a time. The zero value is empty.
type signerCache struct {
	decrypt sync.Mutex // held while decrypting or setting up a KMS client
	mu      sync.Mutex
	byKey   map[string]signing.Signer
	// bad remembers keys that failed to decrypt (wrong password, damaged
	// key): the same bytes fail the same way, so retries skip the scrypt.
	bad map[string]error
}

// maxCachedSigners bounds the cache; past it, it starts over.
const maxCachedSigners = 256

func (c *signerCache) get(k string) (signing.Signer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[k], c.bad[k]
}

// put caches s, or err for content that cannot make a signer.
func (c *signerCache) put(k string, s signing.Signer, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil || len(c.byKey)+len(c.bad) >= maxCachedSigners {
		c.byKey, c.bad = map[string]signing.Signer{}, map[string]error{}
	}
	if err != nil {
		c.bad[k] = err
	} else {
		c.byKey[k] = s
	}
}

func (c *signerCache) secret(keyPEM, password []byte) (signing.Signer, error) {
	h := sha256.New()
	h.Write(keyPEM)
	h.Write([]byte{0})
	h.Write(password)
	k := "secret:" + hex.EncodeToString(h.Sum(nil))
	if s, err := c.get(k); s != nil || err != nil {
		return s, err
	}
	c.decrypt.Lock()
	defer c.decrypt.Unlock()
	if s, err := c.get(k); s != nil || err != nil {
		return s, err
	}
	key, err := signing.ParsePrivateKeyPEM(keyPEM, func(bool) ([]byte, error) { return password, nil })
	// scrypt's 32 MiB are garbage now. Collect them before the heap grows
	// to twice the size they made it (that doubled the controller's peak
	// memory under a burst), and give the pages back.
	debug.FreeOSMemory()
	var s signing.Signer
	if err == nil {
		s, err = signing.NewSigner(key)
	}
	c.put(k, s, err)
	return s, err
}

func (c *signerCache) kms(ctx context.Context, uri string) (signing.Signer, error) {
	k := "kms:" + uri
	if s, _ := c.get(k); s != nil {
		return s, nil
	}
	c.decrypt.Lock()
	defer c.decrypt.Unlock()
	if s, _ := c.get(k); s != nil {
		return s, nil
	}
	// KMS failures may be transient (network, credentials): not cached.
	s, err := signing.KMSSigner(ctx, uri)
	if err != nil {
		return nil, err
	}
	c.put(k, s, nil)
	return s, nil
}

// Backends opens the backends cfg names, each the way its row of
// settings.BackendKinds says (OpenBackends when set). Stores are opened once
// per Shared and path, and shared by both controllers.
func (r *Reconciler) Backends(ctx context.Context, cfg *settings.Config) ([]Backend, error) {
	if r.OpenBackends != nil {
		return r.OpenBackends(cfg)
	}
	if r.Shared == nil {
		return nil, errNoShared
	}
	var out []Backend
	for _, name := range cfg.Backends {
		kind, ok := settings.LookupBackend(name)
		if !ok {
			return nil, fmt.Errorf("%w: unknown backend %q", settings.ErrInvalid, name)
		}
		b, err := kind.Open(ctx, cfg, &r.Shared.stores)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// patch merge-patches tr's annotations (nil value: remove) and adds or
// removes the finalizer, guarded by tr's resourceVersion: a concurrent
// change makes it fail with a conflict and the key is retried.
func (r *Reconciler) patch(ctx context.Context, tr *v1.TaskRun, annotations map[string]*string, addFinalizer bool) (*v1.TaskRun, error) {
	body, err := MetaPatch(tr, Finalizer, addFinalizer, annotations)
	if err != nil {
		return nil, err
	}
	return r.Tekton.TektonV1().TaskRuns(tr.Namespace).Patch(ctx, tr.Name, types.MergePatchType, body, metav1.PatchOptions{})
}

// MetaPatch is the JSON merge patch the reconcilers write: annotations
// (nil value: remove), finalizer added or removed, guarded by obj's
// resourceVersion.
func MetaPatch(obj metav1.Object, finalizer string, addFinalizer bool, annotations map[string]*string) ([]byte, error) {
	finalizers := []string{}
	for _, f := range obj.GetFinalizers() {
		if f != finalizer {
			finalizers = append(finalizers, f)
		}
	}
	if addFinalizer {
		finalizers = append(finalizers, finalizer)
	}
	meta := map[string]any{"resourceVersion": obj.GetResourceVersion(), "finalizers": finalizers}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	return json.Marshal(map[string]any{"metadata": meta})
}

// HasFinalizer reports whether obj carries finalizer.
func HasFinalizer(obj metav1.Object, finalizer string) bool {
	return slices.Contains(obj.GetFinalizers(), finalizer)
}

// nonEmpty is &s, or nil (remove the annotation) for "".
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// completedAt is tr's completionTime, zero when Tekton wrote none.
func completedAt(tr *v1.TaskRun) time.Time {
	if tr.Status.CompletionTime == nil {
		return time.Time{}
	}
	return tr.Status.CompletionTime.Time
}

func hasFinalizer(tr *v1.TaskRun) bool { return HasFinalizer(tr, Finalizer) }

func sha256Subjects(a run.Artifacts) []string {
	var out []string
	for _, ds := range a {
		if d, ok := ds["sha256"]; ok {
			out = append(out, "sha256:"+d)
		}
	}
	return out
}

func hexSHA256(b []byte) string {
	d := sha256.Sum256(b)
	return hex.EncodeToString(d[:])
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func ptr(s string) *string { return &s }
