package main

// Served built-in types: scheme registration, generic strategies and the
// etcd-backed registry stores (with status subresources) for each resource.

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

var (
	// Scheme holds the served built-in types. Each external type is also
	// registered as its own internal version, so conversion is a no-op.
	Scheme = runtime.NewScheme()
	// Codecs serializes the built-in types.
	Codecs = serializer.NewCodecFactory(Scheme)
	// namerScheme holds external versions only; it names OpenAPI definitions.
	namerScheme = runtime.NewScheme()
)

type addFunc func(*runtime.Scheme) error

// servedGroups lists the group versions served, with the registration function
// of the upstream type package.
var servedGroups = []struct {
	gv  schema.GroupVersion
	add addFunc
}{
	{corev1.SchemeGroupVersion, corev1.AddToScheme},
	{appsv1.SchemeGroupVersion, appsv1.AddToScheme},
	{batchv1.SchemeGroupVersion, batchv1.AddToScheme},
	{rbacv1.SchemeGroupVersion, rbacv1.AddToScheme},
	{networkingv1.SchemeGroupVersion, networkingv1.AddToScheme},
	{policyv1.SchemeGroupVersion, policyv1.AddToScheme},
	{autoscalingv2.SchemeGroupVersion, autoscalingv2.AddToScheme},
	{coordinationv1.SchemeGroupVersion, coordinationv1.AddToScheme},
	{eventsv1.SchemeGroupVersion, eventsv1.AddToScheme},
}

// resourceSpec describes one served resource.
type resourceSpec struct {
	gv         schema.GroupVersion
	resource   string
	kind       string
	obj        runtime.Object
	list       runtime.Object
	namespaced bool
	status     bool
	generation bool
	shortNames []string
	categories []string
	attrs      func(obj runtime.Object, set fields.Set)
}

var resources = []*resourceSpec{
	{gv: corev1.SchemeGroupVersion, resource: "namespaces", kind: "Namespace", obj: &corev1.Namespace{}, list: &corev1.NamespaceList{}, status: true, shortNames: []string{"ns"},
		attrs: func(o runtime.Object, s fields.Set) { s["status.phase"] = string(o.(*corev1.Namespace).Status.Phase) }},
	{gv: corev1.SchemeGroupVersion, resource: "configmaps", kind: "ConfigMap", obj: &corev1.ConfigMap{}, list: &corev1.ConfigMapList{}, namespaced: true, shortNames: []string{"cm"}},
	{gv: corev1.SchemeGroupVersion, resource: "secrets", kind: "Secret", obj: &corev1.Secret{}, list: &corev1.SecretList{}, namespaced: true,
		attrs: func(o runtime.Object, s fields.Set) { s["type"] = string(o.(*corev1.Secret).Type) }},
	{gv: corev1.SchemeGroupVersion, resource: "services", kind: "Service", obj: &corev1.Service{}, list: &corev1.ServiceList{}, namespaced: true, status: true, shortNames: []string{"svc"}, categories: []string{"all"}},
	{gv: corev1.SchemeGroupVersion, resource: "serviceaccounts", kind: "ServiceAccount", obj: &corev1.ServiceAccount{}, list: &corev1.ServiceAccountList{}, namespaced: true, shortNames: []string{"sa"}},
	{gv: corev1.SchemeGroupVersion, resource: "pods", kind: "Pod", obj: &corev1.Pod{}, list: &corev1.PodList{}, namespaced: true, status: true, generation: true, shortNames: []string{"po"}, categories: []string{"all"},
		attrs: func(o runtime.Object, s fields.Set) {
			p := o.(*corev1.Pod)
			s["spec.nodeName"] = p.Spec.NodeName
			s["spec.restartPolicy"] = string(p.Spec.RestartPolicy)
			s["spec.schedulerName"] = p.Spec.SchedulerName
			s["spec.serviceAccountName"] = p.Spec.ServiceAccountName
			s["status.phase"] = string(p.Status.Phase)
			s["status.podIP"] = p.Status.PodIP
		}},
	{gv: corev1.SchemeGroupVersion, resource: "endpoints", kind: "Endpoints", obj: &corev1.Endpoints{}, list: &corev1.EndpointsList{}, namespaced: true, shortNames: []string{"ep"}},
	{gv: corev1.SchemeGroupVersion, resource: "events", kind: "Event", obj: &corev1.Event{}, list: &corev1.EventList{}, namespaced: true, shortNames: []string{"ev"},
		attrs: func(o runtime.Object, s fields.Set) {
			e := o.(*corev1.Event)
			s["involvedObject.kind"] = e.InvolvedObject.Kind
			s["involvedObject.namespace"] = e.InvolvedObject.Namespace
			s["involvedObject.name"] = e.InvolvedObject.Name
			s["involvedObject.uid"] = string(e.InvolvedObject.UID)
			s["involvedObject.apiVersion"] = e.InvolvedObject.APIVersion
			s["involvedObject.resourceVersion"] = e.InvolvedObject.ResourceVersion
			s["involvedObject.fieldPath"] = e.InvolvedObject.FieldPath
			s["reason"] = e.Reason
			s["reportingComponent"] = e.ReportingController
			s["source"] = e.Source.Component
			s["type"] = e.Type
		}},
	{gv: corev1.SchemeGroupVersion, resource: "persistentvolumeclaims", kind: "PersistentVolumeClaim", obj: &corev1.PersistentVolumeClaim{}, list: &corev1.PersistentVolumeClaimList{}, namespaced: true, status: true, shortNames: []string{"pvc"}},

	{gv: appsv1.SchemeGroupVersion, resource: "deployments", kind: "Deployment", obj: &appsv1.Deployment{}, list: &appsv1.DeploymentList{}, namespaced: true, status: true, generation: true, shortNames: []string{"deploy"}, categories: []string{"all"}},
	{gv: appsv1.SchemeGroupVersion, resource: "statefulsets", kind: "StatefulSet", obj: &appsv1.StatefulSet{}, list: &appsv1.StatefulSetList{}, namespaced: true, status: true, generation: true, shortNames: []string{"sts"}, categories: []string{"all"}},
	{gv: appsv1.SchemeGroupVersion, resource: "daemonsets", kind: "DaemonSet", obj: &appsv1.DaemonSet{}, list: &appsv1.DaemonSetList{}, namespaced: true, status: true, generation: true, shortNames: []string{"ds"}, categories: []string{"all"}},
	{gv: appsv1.SchemeGroupVersion, resource: "replicasets", kind: "ReplicaSet", obj: &appsv1.ReplicaSet{}, list: &appsv1.ReplicaSetList{}, namespaced: true, status: true, generation: true, shortNames: []string{"rs"}, categories: []string{"all"}},
	{gv: appsv1.SchemeGroupVersion, resource: "controllerrevisions", kind: "ControllerRevision", obj: &appsv1.ControllerRevision{}, list: &appsv1.ControllerRevisionList{}, namespaced: true},

	{gv: batchv1.SchemeGroupVersion, resource: "jobs", kind: "Job", obj: &batchv1.Job{}, list: &batchv1.JobList{}, namespaced: true, status: true, generation: true, categories: []string{"all"}},
	{gv: batchv1.SchemeGroupVersion, resource: "cronjobs", kind: "CronJob", obj: &batchv1.CronJob{}, list: &batchv1.CronJobList{}, namespaced: true, status: true, generation: true, shortNames: []string{"cj"}, categories: []string{"all"}},

	{gv: rbacv1.SchemeGroupVersion, resource: "roles", kind: "Role", obj: &rbacv1.Role{}, list: &rbacv1.RoleList{}, namespaced: true},
	{gv: rbacv1.SchemeGroupVersion, resource: "rolebindings", kind: "RoleBinding", obj: &rbacv1.RoleBinding{}, list: &rbacv1.RoleBindingList{}, namespaced: true},
	{gv: rbacv1.SchemeGroupVersion, resource: "clusterroles", kind: "ClusterRole", obj: &rbacv1.ClusterRole{}, list: &rbacv1.ClusterRoleList{}},
	{gv: rbacv1.SchemeGroupVersion, resource: "clusterrolebindings", kind: "ClusterRoleBinding", obj: &rbacv1.ClusterRoleBinding{}, list: &rbacv1.ClusterRoleBindingList{}},

	{gv: networkingv1.SchemeGroupVersion, resource: "ingresses", kind: "Ingress", obj: &networkingv1.Ingress{}, list: &networkingv1.IngressList{}, namespaced: true, status: true, generation: true, shortNames: []string{"ing"}},
	{gv: networkingv1.SchemeGroupVersion, resource: "ingressclasses", kind: "IngressClass", obj: &networkingv1.IngressClass{}, list: &networkingv1.IngressClassList{}, generation: true},
	{gv: networkingv1.SchemeGroupVersion, resource: "networkpolicies", kind: "NetworkPolicy", obj: &networkingv1.NetworkPolicy{}, list: &networkingv1.NetworkPolicyList{}, namespaced: true, generation: true, shortNames: []string{"netpol"}},

	{gv: policyv1.SchemeGroupVersion, resource: "poddisruptionbudgets", kind: "PodDisruptionBudget", obj: &policyv1.PodDisruptionBudget{}, list: &policyv1.PodDisruptionBudgetList{}, namespaced: true, status: true, generation: true, shortNames: []string{"pdb"}},

	{gv: autoscalingv2.SchemeGroupVersion, resource: "horizontalpodautoscalers", kind: "HorizontalPodAutoscaler", obj: &autoscalingv2.HorizontalPodAutoscaler{}, list: &autoscalingv2.HorizontalPodAutoscalerList{}, namespaced: true, status: true, shortNames: []string{"hpa"}, categories: []string{"all"}},

	{gv: coordinationv1.SchemeGroupVersion, resource: "leases", kind: "Lease", obj: &coordinationv1.Lease{}, list: &coordinationv1.LeaseList{}, namespaced: true},

	{gv: eventsv1.SchemeGroupVersion, resource: "events", kind: "Event", obj: &eventsv1.Event{}, list: &eventsv1.EventList{}, namespaced: true, shortNames: []string{"ev"}},
}

func init() {
	for _, g := range servedGroups {
		if err := g.add(Scheme); err != nil {
			panic(fmt.Sprintf("failed to register %s: %v", g.gv, err))
		}
		if err := g.add(namerScheme); err != nil {
			panic(fmt.Sprintf("failed to register %s: %v", g.gv, err))
		}
	}
	// Register every served type as the internal version of its group too.
	for _, r := range resources {
		internal := schema.GroupVersion{Group: r.gv.Group, Version: runtime.APIVersionInternal}
		Scheme.AddKnownTypeWithName(internal.WithKind(r.kind), r.obj.DeepCopyObject())
		Scheme.AddKnownTypeWithName(internal.WithKind(r.kind+"List"), r.list.DeepCopyObject())
	}
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	Scheme.AddUnversionedTypes(schema.GroupVersion{Group: "", Version: "v1"},
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
	for _, r := range resources {
		if r.attrs == nil {
			continue
		}
		rs := r
		err := Scheme.AddFieldLabelConversionFunc(rs.gv.WithKind(rs.kind), func(label, value string) (string, string, error) {
			set := fields.Set{"metadata.name": "", "metadata.namespace": ""}
			rs.attrs(rs.obj.DeepCopyObject(), set)
			if _, ok := set[label]; ok {
				return label, value, nil
			}
			return "", "", fmt.Errorf("field label not supported: %s", label)
		})
		if err != nil {
			panic(err)
		}
	}
	registerDefaults(Scheme)
}

// strategy is the create/update/delete strategy shared by all built-ins.
type strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
	spec      *resourceSpec
	forStatus bool
}

var _ rest.RESTCreateStrategy = strategy{}
var _ rest.RESTUpdateStrategy = strategy{}

func (s strategy) NamespaceScoped() bool { return s.spec.namespaced }

func (s strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	if s.spec.status {
		setField(obj, "Status", nil)
	}
	if s.spec.generation {
		if m, err := meta.Accessor(obj); err == nil {
			m.SetGeneration(1)
		}
	}
	prepareForCreate(ctx, s.spec, obj)
}

func (s strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	newMeta, err1 := meta.Accessor(obj)
	oldMeta, err2 := meta.Accessor(old)
	if err1 != nil || err2 != nil {
		return
	}
	if s.forStatus {
		// Only status may change through the status subresource.
		if f := field0(old, "Spec"); f.IsValid() {
			setField(obj, "Spec", f.Interface())
		}
		newMeta.SetGeneration(oldMeta.GetGeneration())
		return
	}
	if s.spec.status {
		if f := field0(old, "Status"); f.IsValid() {
			setField(obj, "Status", f.Interface())
		}
	}
	if s.spec.generation {
		gen := oldMeta.GetGeneration()
		if specChanged(obj, old) {
			gen++
		}
		newMeta.SetGeneration(gen)
	} else {
		newMeta.SetGeneration(oldMeta.GetGeneration())
	}
	prepareForUpdate(ctx, s.spec, obj, old)
}

// specChanged compares everything except metadata and status.
func specChanged(obj, old runtime.Object) bool {
	a := obj.DeepCopyObject()
	b := old.DeepCopyObject()
	for _, o := range []runtime.Object{a, b} {
		setField(o, "ObjectMeta", nil)
		setField(o, "Status", nil)
		setField(o, "TypeMeta", nil)
	}
	return !equality.Semantic.DeepEqual(a, b)
}

func (s strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	m, err := meta.Accessor(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	nameFn := apimachineryvalidation.NameIsDNSSubdomain
	if s.spec.resource == "namespaces" || s.spec.resource == "services" {
		nameFn = apimachineryvalidation.NameIsDNSLabel
	}
	if rbacNames && s.spec.gv.Group == rbacv1.GroupName {
		// As upstream: RBAC names are path segments ("system:discovery").
		nameFn = path.ValidatePathSegmentName
	}
	errs := apimachineryvalidation.ValidateObjectMetaAccessor(m, s.spec.namespaced, nameFn, field.NewPath("metadata"))
	return append(errs, validateObject(s.spec, obj, nil)...)
}

func (s strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	newMeta, err1 := meta.Accessor(obj)
	oldMeta, err2 := meta.Accessor(old)
	if err1 != nil || err2 != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), fmt.Errorf("failed to read object metadata"))}
	}
	errs := apimachineryvalidation.ValidateObjectMetaAccessorUpdate(newMeta, oldMeta, field.NewPath("metadata"))
	if s.forStatus {
		return errs
	}
	return append(errs, validateObject(s.spec, obj, old)...)
}

func (s strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }
func (s strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}
func (s strategy) Canonicalize(obj runtime.Object) {}
func (s strategy) AllowCreateOnUpdate() bool {
	return false
}
func (s strategy) AllowUnconditionalUpdate() bool { return true }

func (s strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	if !s.spec.status {
		return nil
	}
	set := fieldpath.NewSet(fieldpath.MakePathOrDie("status"))
	if s.forStatus {
		set = fieldpath.NewSet(fieldpath.MakePathOrDie("spec"))
	}
	return map[fieldpath.APIVersion]*fieldpath.Set{fieldpath.APIVersion(s.spec.gv.String()): set}
}

// field0 returns the named struct field of a pointer-to-struct object.
func field0(obj runtime.Object, name string) reflect.Value {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Ptr || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}
	}
	return v.Elem().FieldByName(name)
}

// setField sets (or, with nil, zeroes) the named struct field.
func setField(obj runtime.Object, name string, value interface{}) {
	f := field0(obj, name)
	if !f.IsValid() || !f.CanSet() {
		return
	}
	if value == nil {
		f.Set(reflect.Zero(f.Type()))
		return
	}
	f.Set(reflect.ValueOf(value))
}

// attrFunc returns labels and selectable fields of an object.
func attrFunc(r *resourceSpec) storage.AttrFunc {
	return func(obj runtime.Object) (labels.Set, fields.Set, error) {
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, nil, err
		}
		set := fields.Set{"metadata.name": m.GetName()}
		if r.namespaced {
			set["metadata.namespace"] = m.GetNamespace()
		}
		if r.attrs != nil {
			r.attrs(obj, set)
		}
		return labels.Set(m.GetLabels()), set, nil
	}
}

// REST is the main storage of one resource.
type REST struct {
	*genericregistry.Store
	spec *resourceSpec
}

// ShortNames implements rest.ShortNamesProvider.
func (r *REST) ShortNames() []string { return r.spec.shortNames }

// Categories implements rest.CategoriesProvider.
func (r *REST) Categories() []string { return r.spec.categories }

// StatusREST serves the status subresource.
type StatusREST struct {
	store *genericregistry.Store
}

// New returns an empty object.
func (r *StatusREST) New() runtime.Object { return r.store.New() }

// Destroy cleans up.
func (r *StatusREST) Destroy() {}

// Get retrieves the object.
func (r *StatusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}

// Update alters the status of an object.
func (r *StatusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}

// GetResetFields implements rest.ResetFieldsStrategy.
func (r *StatusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}

// ConvertToTable implements rest.TableConvertor.
func (r *StatusREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, object, tableOptions)
}

func newStore(r *resourceSpec, optsGetter generic.RESTOptionsGetter) (*REST, *StatusREST, error) {
	st := strategy{ObjectTyper: Scheme, NameGenerator: names.SimpleNameGenerator, spec: r}
	objType := reflect.TypeOf(r.obj).Elem()
	listType := reflect.TypeOf(r.list).Elem()
	singular := strings.ToLower(r.kind)
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return reflect.New(objType).Interface().(runtime.Object) },
		NewListFunc:               func() runtime.Object { return reflect.New(listType).Interface().(runtime.Object) },
		DefaultQualifiedResource:  r.gv.WithResource(r.resource).GroupResource(),
		SingularQualifiedResource: r.gv.WithResource(singular).GroupResource(),
		CreateStrategy:            st,
		UpdateStrategy:            st,
		DeleteStrategy:            st,
		ResetFieldsStrategy:       st,
		TableConvertor:            rest.NewDefaultTableConvertor(r.gv.WithResource(r.resource).GroupResource()),
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: attrFunc(r)}); err != nil {
		return nil, nil, fmt.Errorf("failed to complete store for %s: %w", r.resource, err)
	}
	var status *StatusREST
	if r.status {
		ss := *store
		sst := st
		sst.forStatus = true
		ss.UpdateStrategy = sst
		ss.ResetFieldsStrategy = sst
		status = &StatusREST{store: &ss}
	}
	return &REST{Store: store, spec: r}, status, nil
}
