package main

// Background controllers: the namespace controller (content deletion,
// default ServiceAccount and root CA ConfigMap) and a garbage collector that
// is generic over all served kinds (ownerReferences, foreground and orphan
// deletion), both driven by watches.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	clientrest "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

func startControllers(ctx context.Context, cfg *clientrest.Config, o options) error {
	c := restConfig(cfg, "kube-controller-manager/v1.36.4 (linux/amd64) kubernetes/kedge-testcluster")
	kube, err := kubernetes.NewForConfig(c)
	if err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}
	md, err := metadata.NewForConfig(c)
	if err != nil {
		return fmt.Errorf("failed to create metadata client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(c)
	if err != nil {
		return fmt.Errorf("failed to create discovery client: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(o.dataDir, "ca.crt"))
	if err != nil {
		return fmt.Errorf("failed to read CA: %w", err)
	}
	factory := informers.NewSharedInformerFactory(kube, 0)
	nc := &namespaceController{kube: kube, md: md, disc: disc, caPEM: string(caPEM),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 2*time.Second))}
	nsInformer := factory.Core().V1().Namespaces().Informer()
	if _, err := nsInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { nc.enqueue(obj) },
		UpdateFunc: func(_, obj interface{}) { nc.enqueue(obj) },
	}); err != nil {
		return fmt.Errorf("failed to watch namespaces: %w", err)
	}
	nc.lister = nsInformer.GetStore()
	var sim *simulator
	if o.simulator {
		sim, err = newSimulator(kube, factory, o.simDelay)
		if err != nil {
			return err
		}
	}
	factory.Start(ctx.Done())
	go nc.run(ctx)
	g := newGarbageCollector(md, disc)
	go g.run(ctx)
	if sim != nil {
		go sim.run(ctx)
	}
	return nil
}

// ---- namespace controller ----

type namespaceController struct {
	kube   kubernetes.Interface
	md     metadata.Interface
	disc   discovery.DiscoveryInterface
	caPEM  string
	lister cache.Store
	queue  workqueue.TypedRateLimitingInterface[string]
}

func (c *namespaceController) enqueue(obj interface{}) {
	if ns, ok := obj.(*corev1.Namespace); ok {
		c.queue.Add(ns.Name)
	}
}

func (c *namespaceController) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	for i := 0; i < 2; i++ {
		go func() {
			for {
				name, quit := c.queue.Get()
				if quit {
					return
				}
				requeue, err := c.sync(ctx, name)
				switch {
				case err != nil:
					klog.V(2).Infof("namespace %s: %v", name, err)
					c.queue.AddRateLimited(name)
				case requeue:
					c.queue.AddRateLimited(name)
				default:
					c.queue.Forget(name)
				}
				c.queue.Done(name)
			}
		}()
	}
	<-ctx.Done()
}

func (c *namespaceController) sync(ctx context.Context, name string) (bool, error) {
	obj, exists, err := c.lister.GetByKey(name)
	if err != nil || !exists {
		return false, err
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return false, nil
	}
	if ns.DeletionTimestamp == nil {
		return false, c.ensureDefaults(ctx, name)
	}
	remaining, err := c.deleteContent(ctx, name)
	if err != nil {
		return false, err
	}
	if remaining {
		return true, nil
	}
	var keep []corev1.FinalizerName
	for _, f := range ns.Spec.Finalizers {
		if f != corev1.FinalizerKubernetes {
			keep = append(keep, f)
		}
	}
	if len(keep) != len(ns.Spec.Finalizers) {
		n := ns.DeepCopy()
		n.Spec.Finalizers = keep
		if _, err := c.kube.CoreV1().Namespaces().Finalize(ctx, n, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, fmt.Errorf("failed to finalize: %w", err)
		}
	}
	if len(keep) == 0 {
		err := c.kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &ns.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return false, fmt.Errorf("failed to delete: %w", err)
		}
	}
	return false, nil
}

// ensureDefaults creates the "default" ServiceAccount and the
// "kube-root-ca.crt" ConfigMap, as a real cluster's controllers do.
func (c *namespaceController) ensureDefaults(ctx context.Context, ns string) error {
	_, err := c.kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) && !apierrors.IsForbidden(err) {
		return fmt.Errorf("failed to create default service account: %w", err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Annotations: map[string]string{
			"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.",
		}},
		Data: map[string]string{"ca.crt": c.caPEM},
	}
	_, err = c.kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) && !apierrors.IsForbidden(err) {
		return fmt.Errorf("failed to create root CA config map: %w", err)
	}
	return nil
}

// deleteContent deletes every namespaced object; it reports whether any remain.
func (c *namespaceController) deleteContent(ctx context.Context, ns string) (bool, error) {
	lists, err := discovery.ServerPreferredNamespacedResources(c.disc)
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return false, fmt.Errorf("failed to discover resources: %w", err)
	}
	remaining := false
	bg := metav1.DeletePropagationBackground
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !hasVerb(r.Verbs, "list") || !hasVerb(r.Verbs, "delete") {
				continue
			}
			client := c.md.Resource(gv.WithResource(r.Name)).Namespace(ns)
			if hasVerb(r.Verbs, "deletecollection") {
				err := client.DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					return false, fmt.Errorf("failed to delete %s: %w", r.Name, err)
				}
			}
			items, err := client.List(ctx, metav1.ListOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				return false, fmt.Errorf("failed to list %s: %w", r.Name, err)
			}
			for _, it := range items.Items {
				remaining = true
				if it.DeletionTimestamp == nil {
					uid := it.UID
					err := client.Delete(ctx, it.Name, metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid}})
					if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
						return false, fmt.Errorf("failed to delete %s/%s: %w", r.Name, it.Name, err)
					}
				}
			}
		}
	}
	return remaining, nil
}

func hasVerb(verbs []string, v string) bool {
	for _, x := range verbs {
		if x == v {
			return true
		}
	}
	return false
}

// ---- garbage collector ----

type objRef struct {
	gvr       schema.GroupVersionResource
	namespace string
	name      string
	uid       types.UID
}

type gcOp int

const (
	opDependent gcOp = iota // delete the object if all its owners are gone
	opOwner                 // process foregroundDeletion / orphan finalizers
)

type gcItem struct {
	op  gcOp
	ref objRef
}

type resourceInfo struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}

type garbageCollector struct {
	md    metadata.Interface
	disc  discovery.DiscoveryInterface
	queue workqueue.TypedRateLimitingInterface[gcItem]

	mu         sync.Mutex
	kinds      map[schema.GroupVersionKind]resourceInfo
	watching   map[schema.GroupResource]chan struct{}
	dependents map[types.UID]map[objRef]bool // owner uid -> dependents
	ownersOf   map[objRef][]metav1.OwnerReference
	present    map[types.UID]bool // objects the informers show, by uid
	refresh    chan struct{}
	crds       cache.Store
}

func newGarbageCollector(md metadata.Interface, disc discovery.DiscoveryInterface) *garbageCollector {
	return &garbageCollector{
		md:         md,
		disc:       disc,
		queue:      workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[gcItem](20*time.Millisecond, 5*time.Second)),
		kinds:      map[schema.GroupVersionKind]resourceInfo{},
		watching:   map[schema.GroupResource]chan struct{}{},
		dependents: map[types.UID]map[objRef]bool{},
		ownersOf:   map[objRef][]metav1.OwnerReference{},
		present:    map[types.UID]bool{},
		refresh:    make(chan struct{}, 1),
	}
}

var finalizerForeground = metav1.FinalizerDeleteDependents
var finalizerOrphan = metav1.FinalizerOrphanDependents

func (g *garbageCollector) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		g.queue.ShutDown()
	}()
	g.triggerRefresh()
	// CRDs coming and going change the set of watched resources.
	crds := metadatainformer.NewFilteredMetadataInformer(g.md, schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}, "", 0, cache.Indexers{}, nil)
	_, _ = crds.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { g.triggerRefresh() },
		UpdateFunc: func(interface{}, interface{}) { g.triggerRefresh() },
		DeleteFunc: func(interface{}) { g.triggerRefresh() },
	})
	g.crds = crds.Informer().GetStore()
	go crds.Informer().Run(ctx.Done())
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-g.refresh:
				if err := g.syncResources(ctx); err != nil {
					klog.V(2).Infof("garbage collector: %v", err)
					select {
					case <-ctx.Done():
						return
					case <-time.After(200 * time.Millisecond):
						g.triggerRefresh()
					}
				}
			}
		}
	}()
	for i := 0; i < 4; i++ {
		go func() {
			for {
				it, quit := g.queue.Get()
				if quit {
					return
				}
				var err error
				if it.op == opDependent {
					err = g.attemptToDelete(ctx, it.ref)
				} else {
					err = g.processOwner(ctx, it.ref)
				}
				if err != nil {
					klog.V(2).Infof("garbage collector: %s %s/%s: %v", it.ref.gvr.Resource, it.ref.namespace, it.ref.name, err)
					g.queue.AddRateLimited(it)
				} else {
					g.queue.Forget(it)
				}
				g.queue.Done(it)
			}
		}()
	}
	<-ctx.Done()
}

func (g *garbageCollector) triggerRefresh() {
	select {
	case g.refresh <- struct{}{}:
	default:
	}
}

// syncResources starts a metadata informer per served resource.
func (g *garbageCollector) syncResources(ctx context.Context) error {
	_, lists, err := discovery.ServerGroupsAndResources(g.disc)
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return fmt.Errorf("failed to discover resources: %w", err)
	}
	preferred, err := discovery.ServerPreferredResources(g.disc)
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return fmt.Errorf("failed to discover resources: %w", err)
	}
	kinds := map[schema.GroupVersionKind]resourceInfo{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") {
				continue
			}
			kinds[gv.WithKind(r.Kind)] = resourceInfo{gvr: gv.WithResource(r.Name), namespaced: r.Namespaced}
		}
	}
	want := map[schema.GroupResource]schema.GroupVersionResource{}
	for _, l := range preferred {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !hasVerb(r.Verbs, "list") || !hasVerb(r.Verbs, "watch") || !hasVerb(r.Verbs, "delete") {
				continue
			}
			if r.Name == "events" {
				continue
			}
			want[gv.WithResource(r.Name).GroupResource()] = gv.WithResource(r.Name)
		}
	}
	// Discovery lags behind new CRDs: retry until every CRD's resource is seen.
	var missing []string
	if g.crds != nil {
		for _, obj := range g.crds.List() {
			m, ok := obj.(*metav1.PartialObjectMetadata)
			if !ok || m.DeletionTimestamp != nil {
				continue
			}
			plural, group, found := strings.Cut(m.Name, ".")
			if !found {
				continue
			}
			if _, ok := want[schema.GroupResource{Group: group, Resource: plural}]; !ok {
				missing = append(missing, m.Name)
			}
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.kinds = kinds
	for gr, stop := range g.watching {
		if _, ok := want[gr]; !ok {
			close(stop)
			delete(g.watching, gr)
		}
	}
	for gr, gvr := range want {
		if _, ok := g.watching[gr]; ok {
			continue
		}
		stop := make(chan struct{})
		g.watching[gr] = stop
		inf := metadatainformer.NewFilteredMetadataInformer(g.md, gvr, "", 0, cache.Indexers{}, nil).Informer()
		res := gvr
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj interface{}) { g.observe(res, obj, false) },
			UpdateFunc: func(_, obj interface{}) { g.observe(res, obj, false) },
			DeleteFunc: func(obj interface{}) { g.observe(res, obj, true) },
		})
		go func() {
			merged := make(chan struct{})
			go func() {
				select {
				case <-stop:
				case <-ctx.Done():
				}
				close(merged)
			}()
			go func() {
				// Owners of this kind deleted before the informer started sent
				// no delete event: recheck their dependents once it has synced.
				if cache.WaitForCacheSync(merged, inf.HasSynced) {
					g.recheckDependentsOf(res.GroupResource())
				}
			}()
			inf.Run(merged)
		}()
	}
	if len(missing) > 0 {
		return fmt.Errorf("resources of CRDs %v are not discoverable yet", missing)
	}
	return nil
}

// recheckDependentsOf queues every object that has an owner of the given resource.
func (g *garbageCollector) recheckDependentsOf(gr schema.GroupResource) {
	g.mu.Lock()
	var refs []objRef
	for ref, owners := range g.ownersOf {
		for _, o := range owners {
			gv, err := schema.ParseGroupVersion(o.APIVersion)
			if err != nil {
				continue
			}
			if info, ok := g.kinds[gv.WithKind(o.Kind)]; ok && info.gvr.GroupResource() == gr {
				refs = append(refs, ref)
				break
			}
		}
	}
	g.mu.Unlock()
	for _, ref := range refs {
		g.queue.Add(gcItem{op: opDependent, ref: ref})
	}
}

func (g *garbageCollector) observe(gvr schema.GroupVersionResource, obj interface{}, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	ref := objRef{gvr: gvr, namespace: m.Namespace, name: m.Name, uid: m.UID}
	g.mu.Lock()
	for _, o := range g.ownersOf[ref] {
		if deps := g.dependents[o.UID]; deps != nil {
			delete(deps, ref)
			if len(deps) == 0 {
				delete(g.dependents, o.UID)
			}
		}
	}
	delete(g.ownersOf, ref)
	if deleted {
		delete(g.present, m.UID)
	} else {
		g.present[m.UID] = true
	}
	// Like the upstream collector, a dependent is checked only when one of its owners is not in the graph: an
	// update of an object whose owners are all present costs no request.
	ownerMissing := false
	for _, o := range m.OwnerReferences {
		if !g.present[o.UID] {
			ownerMissing = true
		}
	}
	var dependents []objRef
	if deleted {
		for d := range g.dependents[m.UID] {
			dependents = append(dependents, d)
		}
	} else if len(m.OwnerReferences) > 0 {
		g.ownersOf[ref] = m.OwnerReferences
		for _, o := range m.OwnerReferences {
			if g.dependents[o.UID] == nil {
				g.dependents[o.UID] = map[objRef]bool{}
			}
			g.dependents[o.UID][ref] = true
		}
	}
	g.mu.Unlock()

	if deleted {
		for _, d := range dependents {
			g.queue.Add(gcItem{op: opDependent, ref: d})
		}
		// An owner in foreground deletion may be waiting for this object.
		for _, o := range m.OwnerReferences {
			if owner, ok := g.resolve(o, m.Namespace); ok {
				g.queue.Add(gcItem{op: opOwner, ref: owner})
			}
		}
		return
	}
	if ownerMissing {
		g.queue.Add(gcItem{op: opDependent, ref: ref})
	}
	if m.DeletionTimestamp != nil && (hasFinalizer(m.Finalizers, finalizerForeground) || hasFinalizer(m.Finalizers, finalizerOrphan)) {
		g.queue.Add(gcItem{op: opOwner, ref: ref})
	}
}

func hasFinalizer(fs []string, f string) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

// resolve maps an owner reference to the owner's resource and namespace.
func (g *garbageCollector) resolve(o metav1.OwnerReference, namespace string) (objRef, bool) {
	gv, err := schema.ParseGroupVersion(o.APIVersion)
	if err != nil {
		return objRef{}, false
	}
	g.mu.Lock()
	info, ok := g.kinds[gv.WithKind(o.Kind)]
	g.mu.Unlock()
	if !ok {
		return objRef{}, false
	}
	ns := ""
	if info.namespaced {
		ns = namespace
	}
	return objRef{gvr: info.gvr, namespace: ns, name: o.Name, uid: o.UID}, true
}

func (g *garbageCollector) get(ctx context.Context, ref objRef) (*metav1.PartialObjectMetadata, error) {
	m, err := g.md.Resource(ref.gvr).Namespace(ref.namespace).Get(ctx, ref.name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	if m.UID != ref.uid {
		return nil, nil
	}
	return m, nil
}

// attemptToDelete deletes an object whose owners are all gone, and drops
// references to owners that are gone while others remain.
func (g *garbageCollector) attemptToDelete(ctx context.Context, ref objRef) error {
	m, err := g.get(ctx, ref)
	if err != nil || m == nil || m.DeletionTimestamp != nil || len(m.OwnerReferences) == 0 {
		return err
	}
	var alive []metav1.OwnerReference
	for _, o := range m.OwnerReferences {
		owner, ok := g.resolve(o, m.Namespace)
		if !ok {
			// Unknown kind (perhaps a CRD not discovered yet): retry later.
			g.triggerRefresh()
			return fmt.Errorf("cannot resolve owner kind %s %s", o.APIVersion, o.Kind)
		}
		om, err := g.get(ctx, owner)
		if err != nil {
			return err
		}
		if om != nil {
			alive = append(alive, o)
		}
	}
	client := g.md.Resource(ref.gvr).Namespace(ref.namespace)
	if len(alive) == 0 {
		bg := metav1.DeletePropagationBackground
		uid := m.UID
		err := client.Delete(ctx, m.Name, metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("failed to delete: %w", err)
		}
		return nil
	}
	if len(alive) < len(m.OwnerReferences) {
		return g.patchMeta(ctx, ref, m, map[string]interface{}{"ownerReferences": alive})
	}
	return nil
}

// processOwner handles an owner being deleted with foreground or orphan propagation.
func (g *garbageCollector) processOwner(ctx context.Context, ref objRef) error {
	m, err := g.get(ctx, ref)
	if err != nil || m == nil || m.DeletionTimestamp == nil {
		return err
	}
	g.mu.Lock()
	var deps []objRef
	for d := range g.dependents[m.UID] {
		deps = append(deps, d)
	}
	g.mu.Unlock()
	if hasFinalizer(m.Finalizers, finalizerOrphan) {
		for _, d := range deps {
			dm, err := g.get(ctx, d)
			if err != nil {
				return err
			}
			if dm == nil {
				continue
			}
			var keep []metav1.OwnerReference
			for _, o := range dm.OwnerReferences {
				if o.UID != m.UID {
					keep = append(keep, o)
				}
			}
			if len(keep) != len(dm.OwnerReferences) {
				if err := g.patchMeta(ctx, d, dm, map[string]interface{}{"ownerReferences": keep}); err != nil {
					return err
				}
			}
		}
		return g.removeFinalizer(ctx, ref, m, finalizerOrphan)
	}
	if hasFinalizer(m.Finalizers, finalizerForeground) {
		waiting := false
		for _, d := range deps {
			dm, err := g.get(ctx, d)
			if err != nil {
				return err
			}
			if dm == nil {
				continue
			}
			waiting = true
			if dm.DeletionTimestamp == nil {
				fg := metav1.DeletePropagationForeground
				uid := dm.UID
				err := g.md.Resource(d.gvr).Namespace(d.namespace).Delete(ctx, d.name, metav1.DeleteOptions{PropagationPolicy: &fg, Preconditions: &metav1.Preconditions{UID: &uid}})
				if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
					return fmt.Errorf("failed to delete dependent %s/%s: %w", d.gvr.Resource, d.name, err)
				}
			}
		}
		if !waiting {
			return g.removeFinalizer(ctx, ref, m, finalizerForeground)
		}
	}
	return nil
}

func (g *garbageCollector) removeFinalizer(ctx context.Context, ref objRef, m *metav1.PartialObjectMetadata, f string) error {
	var keep []string
	for _, x := range m.Finalizers {
		if x != f {
			keep = append(keep, x)
		}
	}
	return g.patchMeta(ctx, ref, m, map[string]interface{}{"finalizers": keep})
}

// patchMeta merge-patches metadata fields, guarded by uid and resourceVersion.
func (g *garbageCollector) patchMeta(ctx context.Context, ref objRef, m *metav1.PartialObjectMetadata, fields map[string]interface{}) error {
	md := map[string]interface{}{"uid": m.UID, "resourceVersion": m.ResourceVersion}
	for k, v := range fields {
		md[k] = v
	}
	body, err := json.Marshal(map[string]interface{}{"metadata": md})
	if err != nil {
		return fmt.Errorf("failed to encode patch: %w", err)
	}
	_, err = g.md.Resource(ref.gvr).Namespace(ref.namespace).Patch(ctx, ref.name, types.MergePatchType, body, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to patch metadata: %w", err)
	}
	return nil
}
