package incluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/stepseal/stepseal/pkg/admission"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	kubeclient "knative.dev/pkg/client/injection/kube/client"
	"knative.dev/pkg/controller"
	secretinformer "knative.dev/pkg/injection/clients/namespacedkube/informers/core/v1/secret"
	"knative.dev/pkg/logging"
	knmetrics "knative.dev/pkg/observability/metrics"
	"knative.dev/pkg/system"
	"knative.dev/pkg/webhook"
	"knative.dev/pkg/webhook/certificates"
)

// Run serves the admission webhook until ctx ends: it watches the policy
// ConfigMap and the certificates Secret (informers restricted to those
// names, so the RBAC needs no other Secret), runs knative's certificates
// controller and the CAInjector, records metrics and Events, and serves
// admission.ObservedMux over TLS with SecretCertificates.
func Run(ctx context.Context, cfg *rest.Config, o admission.RunOptions) error {
	if o.Namespace == "" || o.PolicyConfigMap == "" || o.CertSecret == "" || o.Service == "" || o.WebhookConfig == "" || o.Listener == nil {
		return errors.New("admission: namespace, policy ConfigMap, certificate Secret, Service, webhook configuration name and listener are required")
	}
	if ns := envNamespace(); ns != o.Namespace {
		return fmt.Errorf("admission: SYSTEM_NAMESPACE is %q, the webhook's namespace %q (knative's certificates controller reads the variable)", ns, o.Namespace)
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop().Sugar()
	}
	ctx = logging.WithLogger(ctx, log)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	// Informers on exactly one Secret and one ConfigMap: list and watch
	// with a metadata.name field selector are authorized by resourceNames.
	byName := func(name string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	}
	secretFactory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Hour, informers.WithNamespace(o.Namespace), byName(o.CertSecret))
	cmFactory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Hour, informers.WithNamespace(o.Namespace), byName(o.PolicyConfigMap))
	secrets := secretFactory.Core().V1().Secrets()
	cms := cmFactory.Core().V1().ConfigMaps()
	secretInf, cmInf := secrets.Informer(), cms.Informer()

	// Metrics.
	var met *admission.Metrics
	if o.MetricsAddr != "" {
		mp, err := knmetrics.NewMeterProvider(ctx, knmetrics.Config{Protocol: knmetrics.ProtocolPrometheus, Endpoint: o.MetricsAddr})
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		defer func() { _ = mp.Shutdown(context.Background()) }()
		if met, err = admission.NewMetrics(mp); err != nil {
			return err
		}
	}
	base := o.Decide
	if base.Cache == nil {
		base.Cache = admission.NewCache(admission.CacheOptions{OnLookup: met.CacheLookup})
	}
	// Multi-platform: every Node's platform label, from an informer (a
	// node not seen yet is asked for).
	synced := []cache.SharedIndexInformer{secretInf, cmInf}
	var nodeFactory informers.SharedInformerFactory
	if o.PlatformLabel != "" {
		var nodeInf cache.SharedIndexInformer
		if base.Nodes, nodeFactory, nodeInf, err = NodePlatforms(client, o.PlatformLabel); err != nil {
			return err
		}
		synced = append(synced, nodeInf)
	}

	// Events, through client-go's events.k8s.io broadcaster.
	eb := events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})
	eb.StartRecordingToSink(ctx.Done())
	defer eb.Shutdown()
	obs := &admission.Observer{Metrics: met, Events: eb.NewRecorder(scheme.Scheme, "stepseal-admission"),
		EventLimit: rate.NewLimiter(admission.EventRate, admission.EventBurst)}

	// The handler, rebuilt when the policy changes.
	var guard *admission.LabelGuard
	if o.NamespaceLabel != "" {
		guard = &admission.LabelGuard{Label: o.NamespaceLabel}
	}
	var current atomic.Pointer[http.Handler]
	var lastPolicy atomic.Pointer[string]
	load := func(cm *corev1.ConfigMap) {
		raw, ok := cm.Data[admission.PolicyKey]
		if !ok {
			log.Errorw("admission policy ConfigMap has no "+admission.PolicyKey+"; keeping the last good policy", "configmap", cm.Name)
			return
		}
		if p := lastPolicy.Load(); p != nil && *p == raw {
			return
		}
		pol, err := admission.ParsePolicy([]byte(raw))
		if err != nil {
			log.Errorw("admission policy refused; keeping the last good policy", "configmap", cm.Name, "error", err)
			return
		}
		c := base
		c.Policy = pol
		d, err := admission.NewDecider(c)
		if err != nil {
			log.Errorw("admission policy refused; keeping the last good policy", "configmap", cm.Name, "error", err)
			return
		}
		h := admission.ObservedMux(d, guard, obs)
		current.Store(&h)
		lastPolicy.Store(&raw)
		log.Infow("admission policy loaded", "configmap", cm.Name, "rules", len(pol.Rules), "digest", pol.Digest)
	}
	if _, err := cmInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { load(obj.(*corev1.ConfigMap)) },
		UpdateFunc: func(_, obj any) { load(obj.(*corev1.ConfigMap)) },
	}); err != nil {
		return err
	}

	// knative's certificates controller fills and renews the Secret; the
	// CAInjector puts its CA into the webhook configurations.
	kctx := context.WithValue(ctx, kubeclient.Key{}, kubernetes.Interface(client))
	kctx = context.WithValue(kctx, secretinformer.Key{}, secrets)
	kctx = webhook.WithOptions(kctx, webhook.Options{ServiceName: o.Service, SecretName: o.CertSecret})
	certCtl := certificates.NewController(kctx, nil)
	inj := &CAInjector{Client: client, Lister: secrets.Lister(), Namespace: o.Namespace, Name: o.CertSecret, Service: o.Service,
		Mutating: []string{o.WebhookConfig}, Validating: []string{o.WebhookConfig}}
	injCtl := controller.NewContext(kctx, inj, controller.ControllerOptions{WorkQueueName: "CABundle", Logger: log.Named("CABundle")})
	key := types.NamespacedName{Namespace: o.Namespace, Name: o.CertSecret}
	if _, err := secretInf.AddEventHandler(controller.HandleAll(func(any) { injCtl.EnqueueKey(key) })); err != nil {
		return err
	}

	secretFactory.Start(ctx.Done())
	cmFactory.Start(ctx.Done())
	if nodeFactory != nil {
		nodeFactory.Start(ctx.Done())
	}
	for _, inf := range synced {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return fmt.Errorf("admission: informers did not sync: %w", context.Cause(ctx))
		}
	}
	go func() { _ = certCtl.RunContext(ctx, 1) }()
	go func() { _ = injCtl.RunContext(ctx, 1) }()
	// The first reconcile of an existing Secret; then again every minute,
	// in case a re-applied configuration lost its caBundle.
	certCtl.EnqueueKey(key)
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			injCtl.EnqueueKey(key)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()

	certs := &SecretCertificates{Lister: secrets.Lister(), Namespace: o.Namespace, Name: o.CertSecret, Grace: o.CertGrace, Trusted: inj.Injected}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := current.Load()
			if h == nil {
				// Not ready (/healthz), and never an answer without a
				// policy: the apiserver's failurePolicy Fail refuses.
				http.Error(w, "stepseal: no admission policy loaded", http.StatusServiceUnavailable)
				return
			}
			(*h).ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate},
		ErrorLog:          zap.NewStdLog(log.Desugar()),
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(o.Listener, "", "") }()
	log.Infow("serving admission", "addr", o.Listener.Addr().String(), "metrics", o.MetricsAddr)
	if o.Ready != nil {
		close(o.Ready)
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
		return nil
	}
}

// NodePlatforms is the admission.NodePlatforms of a multi-platform
// cluster: each node's platform is its label label, read from an informer
// on every Node that keeps only their metadata's labels (a node the
// informer has not seen yet is asked for). The caller starts the factory
// and waits for the informer to sync.
func NodePlatforms(client kubernetes.Interface, label string) (*admission.NodePlatforms, informers.SharedInformerFactory, cache.SharedIndexInformer, error) {
	factory := informers.NewSharedInformerFactory(client, 10*time.Hour)
	nodes := factory.Core().V1().Nodes()
	inf := nodes.Informer()
	if err := inf.SetTransform(func(obj any) (any, error) {
		if n, ok := obj.(*corev1.Node); ok {
			n.Status, n.Spec, n.ManagedFields, n.Annotations = corev1.NodeStatus{}, corev1.NodeSpec{}, nil, nil
		}
		return obj, nil
	}); err != nil {
		return nil, nil, nil, err
	}
	lister := nodes.Lister()
	np := &admission.NodePlatforms{Label: label, Node: func(ctx context.Context, name string) (*corev1.Node, error) {
		n, err := lister.Get(name)
		if apierrors.IsNotFound(err) {
			return client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		}
		return n, err
	}}
	return np, factory, inf, nil
}

// envNamespace is knative's system.Namespace without its panic.
func envNamespace() (ns string) {
	defer func() {
		if recover() != nil {
			ns = ""
		}
	}()
	return system.Namespace()
}
