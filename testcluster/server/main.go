// Command kedge-testcluster is a small Kubernetes API server for Kedge's
// tests: upstream apiserver libraries serving the common built-in types and
// CRDs from etcd, plus a namespace controller, garbage collector and a
// workload simulator.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	noopoteltrace "go.opentelemetry.io/otel/trace/noop"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsv1beta1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	extapiserver "k8s.io/apiextensions-apiserver/pkg/apiserver"
	extoptions "k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	openapicontroller "k8s.io/apiextensions-apiserver/pkg/controller/openapi"
	openapiv3controller "k8s.io/apiextensions-apiserver/pkg/controller/openapiv3"
	extopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	discoveryendpoint "k8s.io/apiserver/pkg/endpoints/discovery/aggregated"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	serverstorage "k8s.io/apiserver/pkg/server/storage"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientrest "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/klog/v2"
	"k8s.io/kube-openapi/pkg/common"

	generatedopenapi "kedge.test/openapi"
)

type options struct {
	etcdServers string
	port        int
	dataDir     string
	kubeconfig  string
	name        string
	simulator   bool
	simDelay    time.Duration
	auditLog    string
	rbac        bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "freeport" {
		freePorts(os.Args[2:])
		return
	}
	var o options
	flag.StringVar(&o.etcdServers, "etcd-servers", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
	flag.IntVar(&o.port, "port", 0, "port to serve HTTPS on 127.0.0.1 (0 picks a free port)")
	flag.StringVar(&o.dataDir, "data-dir", "", "directory for certificates, the admin token and the kubeconfig")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "where to write the admin kubeconfig (default DATA_DIR/kubeconfig)")
	flag.StringVar(&o.name, "name", "default", "cluster name (the kubeconfig context is kedge-test-NAME)")
	flag.BoolVar(&o.simulator, "simulator", true, "run the workload simulator")
	flag.DurationVar(&o.simDelay, "sim-delay", time.Second, "delay before simulated workloads become ready")
	flag.StringVar(&o.auditLog, "audit-log", "", "append an audit event (JSON line) for every request that is not a read to this file")
	flag.BoolVar(&o.rbac, "rbac", false, "authorize by RBAC (members of system:masters are always allowed) and issue ServiceAccount tokens")
	klog.InitFlags(flag.CommandLine)
	flag.Parse()
	if o.dataDir == "" {
		fmt.Fprintln(os.Stderr, "--data-dir is required")
		os.Exit(2)
	}
	if o.kubeconfig == "" {
		o.kubeconfig = filepath.Join(o.dataDir, "kubeconfig")
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "kedge-testcluster: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("failed to create data dir: %w", err)
	}
	if o.rbac {
		registerRBACTypes()
	}
	caPEM, err := ensureCerts(o.dataDir)
	if err != nil {
		return err
	}
	token, err := ensureToken(filepath.Join(o.dataDir, "token"))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", o.port))
	if err != nil {
		return fmt.Errorf("failed to listen: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	server := fmt.Sprintf("https://127.0.0.1:%d", port)

	// Serving and loopback.
	sso := genericoptions.NewSecureServingOptions().WithLoopback()
	sso.BindAddress = net.ParseIP("127.0.0.1")
	sso.BindPort = port
	sso.Listener = ln
	sso.ServerCert.CertKey.CertFile = filepath.Join(o.dataDir, "server.crt")
	sso.ServerCert.CertKey.KeyFile = filepath.Join(o.dataDir, "server.key")

	cfg := genericapiserver.NewRecommendedConfig(Codecs)
	cfg.EffectiveVersion = basecompatibility.NewEffectiveVersionFromString("1.36", "", "")
	if err := sso.ApplyTo(&cfg.SecureServing, &cfg.LoopbackClientConfig); err != nil {
		return fmt.Errorf("failed to configure serving: %w", err)
	}
	cfg.ExternalAddress = fmt.Sprintf("127.0.0.1:%d", port)

	// Storage.
	var gvs []schema.GroupVersion
	for _, g := range servedGroups {
		gvs = append(gvs, g.gv)
	}
	etcdOpts := genericoptions.NewEtcdOptions(storagebackend.NewDefaultConfig("/registry", Codecs.LegacyCodec(gvs...)))
	etcdOpts.StorageConfig.Transport.ServerList = strings.Split(o.etcdServers, ",")
	if err := etcdOpts.ApplyTo(&cfg.Config); err != nil {
		return fmt.Errorf("failed to configure etcd: %w", err)
	}

	// Authentication: the admin token, anonymous only for health and version.
	cfg.Authentication.Authenticator = bearertoken.New(authenticator.TokenFunc(func(ctx context.Context, t string) (*authenticator.Response, bool, error) {
		if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
			return &authenticator.Response{User: &user.DefaultInfo{Name: "kedge-admin", Groups: []string{user.SystemPrivilegedGroup, user.AllAuthenticated}}}, true, nil
		}
		return nil, false, nil
	}))
	// With --rbac, ServiceAccount tokens too, and RBAC instead of allowing everything; rb is set below, once the
	// loopback client (which needs the loopback token) exists, and before the server serves.
	var rb *rbacMode
	if o.rbac {
		admin := cfg.Authentication.Authenticator
		cfg.Authentication.Authenticator = union.New(admin, bearertoken.New(authenticator.TokenFunc(func(ctx context.Context, t string) (*authenticator.Response, bool, error) {
			return rb.authenticateToken(ctx, t)
		})))
	}
	cfg.Authentication.Authenticator = publicPaths{cfg.Authentication.Authenticator}
	cfg.Authorization.Authorizer = authorizerfactory.NewAlwaysAllowAuthorizer()
	if o.rbac {
		cfg.Authorization.Authorizer = authorizer.AuthorizerFunc(func(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
			return rb.authorizer.Authorize(ctx, a)
		})
	}
	genericapiserver.AuthorizeClientBearerToken(cfg.LoopbackClientConfig, &cfg.Authentication, &cfg.Authorization)

	// OpenAPI: built-in definitions plus apiextensions' own.
	getDefs := func(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
		defs := generatedopenapi.GetOpenAPIDefinitions(ref)
		for k, v := range extopenapi.GetOpenAPIDefinitions(ref) {
			if _, ok := defs[k]; !ok {
				defs[k] = v
			}
		}
		return defs
	}
	namer := openapinamer.NewDefinitionNamer(namerScheme, extapiserver.Scheme)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(getDefs, namer)
	cfg.OpenAPIConfig.Info.Title = "Kubernetes"
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(getDefs, namer)
	cfg.OpenAPIV3Config.Info.Title = "Kubernetes"

	resCfg := serverstorage.NewResourceConfig()
	resCfg.EnableVersions(gvs...)
	if o.rbac {
		resCfg.EnableVersions(authenticationv1.SchemeGroupVersion, authorizationv1.SchemeGroupVersion)
	}
	cfg.MergedResourceConfig = resCfg

	loopbackClient, err := kubernetes.NewForConfig(cfg.LoopbackClientConfig)
	if err != nil {
		return fmt.Errorf("failed to create loopback client: %w", err)
	}
	cfg.SharedInformerFactory = informers.NewSharedInformerFactory(loopbackClient, 10*time.Minute)
	if o.rbac {
		if rb, err = newRBACMode(loopbackClient, o.dataDir); err != nil {
			return err
		}
	}
	cfg.ClientConfig = cfg.LoopbackClientConfig

	// Admission: NamespaceLifecycle.
	nsLifecycle, err := lifecycle.NewLifecycle(sets.New(metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic))
	if err != nil {
		return fmt.Errorf("failed to create namespace admission: %w", err)
	}
	nsLifecycle.SetExternalKubeClientSet(loopbackClient)
	nsLifecycle.SetExternalKubeInformerFactory(cfg.SharedInformerFactory)
	if err := nsLifecycle.ValidateInitialization(); err != nil {
		return fmt.Errorf("failed to initialize namespace admission: %w", err)
	}
	cfg.AdmissionControl = nsLifecycle

	// The apiextensions server (CRDs) is the delegate of the built-in server.
	extGeneric := *cfg
	extGeneric.Config.Serializer = extapiserver.Codecs
	extGeneric.PostStartHooks = map[string]genericapiserver.PostStartHookConfigEntry{}
	extGeneric.RESTOptionsGetter = nil
	extEtcd := *etcdOpts
	extEtcd.StorageConfig.Codec = extapiserver.Codecs.LegacyCodec(apiextensionsv1beta1.SchemeGroupVersion, apiextensionsv1.SchemeGroupVersion)
	extEtcd.SkipHealthEndpoints = true
	if err := extEtcd.ApplyTo(&extGeneric.Config); err != nil {
		return fmt.Errorf("failed to configure etcd for CRDs: %w", err)
	}
	extGeneric.MergedResourceConfig = extapiserver.DefaultAPIResourceConfigSource()
	extGeneric.OpenAPIConfig = nil
	extGeneric.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(getDefs, namer)
	crdOptsEtcd := *etcdOpts
	crdOptsEtcd.SkipHealthEndpoints = true
	extConfig := &extapiserver.Config{
		GenericConfig: &extGeneric,
		ExtraConfig: extapiserver.ExtraConfig{
			CRDRESTOptionsGetter: extoptions.NewCRDRESTOptionsGetter(crdOptsEtcd, cfg.ResourceTransformers, cfg.StorageObjectCountTracker),
			ServiceResolver:      webhook.NewDefaultServiceResolver(),
			AuthResolverWrapper:  webhook.NewDefaultAuthenticationInfoResolverWrapper(nil, nil, cfg.LoopbackClientConfig, noopoteltrace.NewTracerProvider()),
			MasterCount:          1,
		},
	}
	// Both servers share one aggregated discovery manager.
	discoveryManager := discoveryendpoint.NewResourceManager("apis")
	cfg.AggregatedDiscoveryGroupManager = discoveryManager
	extGeneric.AggregatedDiscoveryGroupManager = discoveryManager
	// The audit log, when asked for, is set after the delegate's config was copied: the built-in server's filter
	// chain sees every request (CRD requests too, before it hands them to the delegate), so each is logged once.
	if o.auditLog != "" {
		if err := enableAudit(cfg, o.auditLog); err != nil {
			return err
		}
	}
	completedCore := cfg.Complete()
	extServer, err := extConfig.Complete().New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return fmt.Errorf("failed to create apiextensions server: %w", err)
	}
	core, err := completedCore.New("kedge-testcluster", extServer.GenericAPIServer)
	if err != nil {
		return fmt.Errorf("failed to create server: %w", err)
	}
	if err := installBuiltins(core, cfg, rb); err != nil {
		return err
	}
	if rb != nil {
		if err := rb.installRBACGroups(core); err != nil {
			return err
		}
		core.AddPostStartHookOrDie("kedge-rbac", func(ctx genericapiserver.PostStartHookContext) error {
			return rb.start(ctx)
		})
	}
	extGroup := metav1.GroupVersionForDiscovery{GroupVersion: apiextensionsv1.SchemeGroupVersion.String(), Version: "v1"}
	core.DiscoveryGroupManager.AddGroup(metav1.APIGroup{Name: apiextensionsv1.GroupName, Versions: []metav1.GroupVersionForDiscovery{extGroup}, PreferredVersion: extGroup})

	crdInformer := extServer.Informers.Apiextensions().V1().CustomResourceDefinitions()
	core.AddPostStartHookOrDie("kedge-crd-discovery-and-openapi", func(ctx genericapiserver.PostStartHookContext) error {
		if core.StaticOpenAPISpec != nil && core.OpenAPIVersionedService != nil {
			go openapicontroller.NewController(crdInformer).Run(core.StaticOpenAPISpec, core.OpenAPIVersionedService, ctx.Done())
		}
		if core.OpenAPIV3VersionedService != nil {
			go openapiv3controller.NewController(crdInformer).Run(core.OpenAPIV3VersionedService, ctx.Done())
		}
		return startCRDGroupDiscovery(ctx, core, crdInformer.Informer())
	})
	core.AddPostStartHookOrDie("kedge-bootstrap-namespaces", func(ctx genericapiserver.PostStartHookContext) error {
		return bootstrapNamespaces(ctx, loopbackClient)
	})
	core.AddPostStartHookOrDie("kedge-controllers", func(ctx genericapiserver.PostStartHookContext) error {
		return startControllers(ctx, cfg.LoopbackClientConfig, o)
	})

	if err := writeKubeconfig(o, server, caPEM, token); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.dataDir, "port"), []byte(fmt.Sprintf("%d\n", port)), 0o600); err != nil {
		return fmt.Errorf("failed to write port file: %w", err)
	}
	klog.Infof("serving on %s (kubeconfig %s)", server, o.kubeconfig)
	ctx := genericapiserver.SetupSignalContext()
	return core.PrepareRun().RunWithContext(ctx)
}

// freePorts prints N (default 1) currently free TCP ports on 127.0.0.1.
func freePorts(args []string) {
	n := 1
	if len(args) > 0 {
		if _, err := fmt.Sscanf(args[0], "%d", &n); err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "usage: kedge-testcluster freeport [N]")
			os.Exit(2)
		}
	}
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintf(os.Stderr, "failed to find a free port: %v\n", err)
			os.Exit(1)
		}
		lns = append(lns, ln)
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
}

// publicPaths lets unauthenticated requests reach health and version
// endpoints (as a real cluster's RBAC does); everything else needs the token.
type publicPaths struct{ next authenticator.Request }

func (p publicPaths) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	resp, ok, err := p.next.AuthenticateRequest(req)
	if ok || req.Header.Get("Authorization") != "" {
		return resp, ok, err
	}
	switch req.URL.Path {
	case "/healthz", "/readyz", "/livez", "/version", "/version/":
		return &authenticator.Response{User: &user.DefaultInfo{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}}}, true, nil
	}
	return nil, false, nil
}

func installBuiltins(core *genericapiserver.GenericAPIServer, cfg *genericapiserver.RecommendedConfig, rb *rbacMode) error {
	byGroup := map[string]*genericapiserver.APIGroupInfo{}
	var order []string
	for _, g := range servedGroups {
		Scheme.SetVersionPriority(g.gv)
	}
	for _, r := range resources {
		info, ok := byGroup[r.gv.Group]
		if !ok {
			i := genericapiserver.NewDefaultAPIGroupInfo(r.gv.Group, Scheme, metav1.ParameterCodec, Codecs)
			info = &i
			byGroup[r.gv.Group] = info
			order = append(order, r.gv.Group)
		}
		m := info.VersionedResourcesStorageMap[r.gv.Version]
		if m == nil {
			m = map[string]rest.Storage{}
			info.VersionedResourcesStorageMap[r.gv.Version] = m
		}
		main, status, err := newStore(r, cfg.RESTOptionsGetter)
		if err != nil {
			return err
		}
		if r.resource == "namespaces" {
			nsREST := &namespaceREST{REST: main}
			m[r.resource] = nsREST
			m[r.resource+"/finalize"] = newNamespaceFinalizeREST(main)
		} else {
			m[r.resource] = main
		}
		if r.resource == "serviceaccounts" && rb != nil {
			m[r.resource+"/token"] = &tokenREST{serviceAccounts: main, tokens: rb.tokens}
		}
		if status != nil {
			m[r.resource+"/status"] = status
		}
	}
	if err := core.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, byGroup[""]); err != nil {
		return fmt.Errorf("failed to install core API: %w", err)
	}
	var infos []*genericapiserver.APIGroupInfo
	for _, g := range order {
		if g != "" {
			infos = append(infos, byGroup[g])
		}
	}
	if err := core.InstallAPIGroups(infos...); err != nil {
		return fmt.Errorf("failed to install API groups: %w", err)
	}
	return nil
}

// startCRDGroupDiscovery keeps the plain /apis group list current with CRDs.
func startCRDGroupDiscovery(ctx context.Context, core *genericapiserver.GenericAPIServer, inf cache.SharedIndexInformer) error {
	builtin := map[string]bool{}
	for _, g := range servedGroups {
		builtin[g.gv.Group] = true
	}
	builtin[apiextensionsv1.GroupName] = true
	known := map[string]bool{}
	sync := func() {
		groups := map[string][]string{}
		for _, obj := range inf.GetStore().List() {
			crd, ok := obj.(*apiextensionsv1.CustomResourceDefinition)
			if !ok || builtin[crd.Spec.Group] {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if v.Served {
					groups[crd.Spec.Group] = append(groups[crd.Spec.Group], v.Name)
				}
			}
		}
		for g, versions := range groups {
			versions = sets.List(sets.New(versions...))
			sort.Slice(versions, func(i, j int) bool {
				return version.CompareKubeAwareVersionStrings(versions[i], versions[j]) > 0
			})
			apiGroup := metav1.APIGroup{Name: g}
			for _, v := range versions {
				apiGroup.Versions = append(apiGroup.Versions, metav1.GroupVersionForDiscovery{GroupVersion: g + "/" + v, Version: v})
			}
			apiGroup.PreferredVersion = apiGroup.Versions[0]
			core.DiscoveryGroupManager.AddGroup(apiGroup)
			known[g] = true
		}
		for g := range known {
			if _, ok := groups[g]; !ok {
				core.DiscoveryGroupManager.RemoveGroup(g)
				delete(known, g)
			}
		}
	}
	events := make(chan struct{}, 1)
	notify := func(interface{}) {
		select {
		case events <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, n interface{}) { notify(n) },
		DeleteFunc: notify,
	}); err != nil {
		return fmt.Errorf("failed to watch CRDs: %w", err)
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-events:
				sync()
			}
		}
	}()
	return nil
}

func bootstrapNamespaces(ctx context.Context, c kubernetes.Interface) error {
	for _, name := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, "kube-node-lease"} {
		err := pollUntil(ctx, 30*time.Second, func() (bool, error) {
			_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			if err == nil || apierrors.IsAlreadyExists(err) {
				return true, nil
			}
			klog.V(2).Infof("creating namespace %s: %v", name, err)
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("failed to create namespace %s: %w", name, err)
		}
	}
	return nil
}

func pollUntil(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ensureToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("failed to generate token: %w", err)
	}
	t := hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("failed to write token: %w", err)
	}
	return t, nil
}

// ensureCerts creates a CA and a serving certificate for 127.0.0.1/localhost
// unless they exist; it returns the CA certificate PEM.
func ensureCerts(dir string) ([]byte, error) {
	caPath := filepath.Join(dir, "ca.crt")
	crtPath := filepath.Join(dir, "server.crt")
	keyPath := filepath.Join(dir, "server.key")
	if ca, err := os.ReadFile(caPath); err == nil {
		if _, err := os.Stat(crtPath); err == nil {
			if _, err := os.Stat(keyPath); err == nil {
				return ca, nil
			}
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kedge-testcluster-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("failed to create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("failed to parse CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kedge-testcluster"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("failed to create server certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("failed to encode server key: %w", err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := []struct {
		path string
		data []byte
	}{
		{keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})},
		{crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{caPath, caPEM},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("failed to write %s: %w", f.path, err)
		}
	}
	return caPEM, nil
}

func writeKubeconfig(o options, server string, caPEM []byte, token string) error {
	ctxName := "kedge-test-" + o.name
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[ctxName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[ctxName+"-admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: ctxName, AuthInfo: ctxName + "-admin", Namespace: metav1.NamespaceDefault}
	cfg.CurrentContext = ctxName
	tmp := o.kubeconfig + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return fmt.Errorf("failed to write kubeconfig: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("failed to write kubeconfig: %w", err)
	}
	if err := os.Rename(tmp, o.kubeconfig); err != nil {
		return fmt.Errorf("failed to write kubeconfig: %w", err)
	}
	return nil
}

// restConfig is a copy of the loopback config for controllers.
func restConfig(c *clientrest.Config, agent string) *clientrest.Config {
	cc := clientrest.CopyConfig(c)
	cc.UserAgent = agent
	cc.QPS = 1000
	cc.Burst = 2000
	return cc
}
