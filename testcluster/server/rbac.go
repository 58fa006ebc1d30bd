package main

// RBAC mode (--rbac): the server authorizes requests as a real cluster does.
//
//   - Members of system:masters (the admin token of the kubeconfig, and the
//     server's own loopback client) are always allowed.
//   - Everyone else is authorized by the rbac.authorization.k8s.io/v1 objects
//     (Role, ClusterRole, RoleBinding, ClusterRoleBinding) read from informers
//     on a loopback client. Aggregation is not evaluated. Anything no rule
//     allows is denied (403 with the standard message).
//   - The bootstrap ClusterRoles system:discovery, system:basic-user and
//     system:public-info-viewer with their bindings to system:authenticated
//     (and system:unauthenticated for the public one) are created at start,
//     so discovery, health, version and self access reviews work as upstream.
//
// The evaluator below is written for this server: it follows the documented
// RBAC semantics (wildcards, "*/subresource", resourceNames, nonResourceURLs
// with a trailing "*", User/Group/ServiceAccount subjects), not upstream code.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	authzunion "k8s.io/apiserver/pkg/authorization/union"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/klog/v2"
)

// rbacMode holds what --rbac adds to the server.
type rbacMode struct {
	factory    informers.SharedInformerFactory
	client     kubernetes.Interface
	rbac       *rbacAuthorizer
	authorizer authorizer.Authorizer
	resolver   authorizer.RuleResolver
	tokens     *tokenIssuer
	saLister   corelisters.ServiceAccountLister
}

// rbacNames makes RBAC object names path segments, as upstream, instead of
// DNS subdomains (set with --rbac only, so the default server is unchanged).
var rbacNames bool

// registerRBACTypes adds the authentication.k8s.io/v1 and authorization.k8s.io/v1
// types (TokenRequest, access reviews) to the schemes, each as its own internal
// version like the other served types, and turns on rbacNames. Called before
// the OpenAPI namer is built.
func registerRBACTypes() {
	rbacNames = true
	for _, add := range []addFunc{authenticationv1.AddToScheme, authorizationv1.AddToScheme} {
		if err := add(Scheme); err != nil {
			panic(err)
		}
		if err := add(namerScheme); err != nil {
			panic(err)
		}
	}
	for gv, types := range map[schema.GroupVersion][]runtime.Object{
		authenticationv1.SchemeGroupVersion: {&authenticationv1.TokenRequest{}, &authenticationv1.SelfSubjectReview{}},
		authorizationv1.SchemeGroupVersion: {&authorizationv1.SelfSubjectAccessReview{}, &authorizationv1.SubjectAccessReview{},
			&authorizationv1.LocalSubjectAccessReview{}, &authorizationv1.SelfSubjectRulesReview{}},
	} {
		internal := schema.GroupVersion{Group: gv.Group, Version: runtime.APIVersionInternal}
		for _, t := range types {
			kind := strings.TrimPrefix(fmt.Sprintf("%T", t), "*v1.")
			Scheme.AddKnownTypeWithName(internal.WithKind(kind), t)
		}
		Scheme.SetVersionPriority(gv)
	}
}

// newRBACMode builds the informers, the authorizer and the token issuer.
func newRBACMode(client kubernetes.Interface, dataDir string) (*rbacMode, error) {
	tokens, err := newTokenIssuer(dataDir)
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	r := factory.Rbac().V1()
	a := &rbacAuthorizer{
		roles:               r.Roles().Lister(),
		clusterRoles:        r.ClusterRoles().Lister(),
		roleBindings:        r.RoleBindings().Lister(),
		clusterRoleBindings: r.ClusterRoleBindings().Lister(),
	}
	masters := authorizerfactory.NewPrivilegedGroups(user.SystemPrivilegedGroup)
	return &rbacMode{
		factory:    factory,
		client:     client,
		rbac:       a,
		authorizer: authzunion.New(masters, a),
		resolver:   authzunion.NewRuleResolvers(mastersRules{}, a),
		tokens:     tokens,
		saLister:   factory.Core().V1().ServiceAccounts().Lister(),
	}, nil
}

// start runs the informers, creates the bootstrap roles and waits until the
// authorizer sees them (a post-start hook: /readyz fails until it returns).
func (m *rbacMode) start(ctx context.Context) error {
	m.factory.Start(ctx.Done())
	for typ, ok := range m.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	roles, bindings := bootstrapRBAC()
	err := pollUntil(ctx, 30*time.Second, func() (bool, error) {
		for _, r := range roles {
			if _, err := m.client.RbacV1().ClusterRoles().Create(ctx, r, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				klog.V(2).Infof("creating clusterrole %s: %v", r.Name, err)
				return false, nil
			}
		}
		for _, b := range bindings {
			if _, err := m.client.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				klog.V(2).Infof("creating clusterrolebinding %s: %v", b.Name, err)
				return false, nil
			}
		}
		for _, b := range bindings {
			if _, err := m.rbac.clusterRoleBindings.Get(b.Name); err != nil {
				return false, nil
			}
		}
		for _, r := range roles {
			if _, err := m.rbac.clusterRoles.Get(r.Name); err != nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("failed to create the bootstrap RBAC roles: %w", err)
	}
	return nil
}

// bootstrapRBAC returns the default ClusterRoles and ClusterRoleBindings that
// every cluster has for discovery, health and self reviews.
func bootstrapRBAC() ([]*rbacv1.ClusterRole, []*rbacv1.ClusterRoleBinding) {
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{"kubernetes.io/bootstrapping": "rbac-defaults"},
			Annotations: map[string]string{"rbac.authorization.kubernetes.io/autoupdate": "true"},
		}
	}
	get := []string{"get"}
	roles := []*rbacv1.ClusterRole{
		{ObjectMeta: meta("system:discovery"), Rules: []rbacv1.PolicyRule{{Verbs: get, NonResourceURLs: []string{
			"/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"}}}},
		{ObjectMeta: meta("system:basic-user"), Rules: []rbacv1.PolicyRule{
			{Verbs: []string{"create"}, APIGroups: []string{authorizationv1.GroupName}, Resources: []string{"selfsubjectaccessreviews", "selfsubjectrulesreviews"}},
			{Verbs: []string{"create"}, APIGroups: []string{authenticationv1.GroupName}, Resources: []string{"selfsubjectreviews"}},
		}},
		{ObjectMeta: meta("system:public-info-viewer"), Rules: []rbacv1.PolicyRule{{Verbs: get, NonResourceURLs: []string{
			"/healthz", "/livez", "/readyz", "/version", "/version/"}}}},
	}
	group := func(name string) rbacv1.Subject {
		return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}
	}
	binding := func(name string, subjects ...rbacv1.Subject) *rbacv1.ClusterRoleBinding {
		return &rbacv1.ClusterRoleBinding{ObjectMeta: meta(name), Subjects: subjects,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}}
	}
	bindings := []*rbacv1.ClusterRoleBinding{
		binding("system:discovery", group(user.AllAuthenticated)),
		binding("system:basic-user", group(user.AllAuthenticated)),
		binding("system:public-info-viewer", group(user.AllAuthenticated), group(user.AllUnauthenticated)),
	}
	return roles, bindings
}

// rbacAuthorizer evaluates RBAC rules from the informers' caches.
type rbacAuthorizer struct {
	roles               rbaclisters.RoleLister
	clusterRoles        rbaclisters.ClusterRoleLister
	roleBindings        rbaclisters.RoleBindingLister
	clusterRoleBindings rbaclisters.ClusterRoleBindingLister
}

// Authorize allows a request that some rule bound to the user allows; otherwise
// it has no opinion, which the server turns into 403 Forbidden. Roles that
// bindings refer to but that do not exist are named in the reason.
func (a *rbacAuthorizer) Authorize(ctx context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	u := attrs.GetUser()
	if u == nil {
		return authorizer.DecisionNoOpinion, "no user on the request", nil
	}
	allowed := false
	errs := a.visitRules(u, attrs.GetNamespace(), func(rule *rbacv1.PolicyRule) bool {
		if ruleAllows(attrs, rule) {
			allowed = true
			return false
		}
		return true
	})
	if allowed {
		return authorizer.DecisionAllow, "", nil
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		if len(msgs) == 1 {
			return authorizer.DecisionNoOpinion, "RBAC: " + msgs[0], nil
		}
		return authorizer.DecisionNoOpinion, "RBAC: [" + strings.Join(msgs, ", ") + "]", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

// visitRules calls f with every rule that applies to u in namespace ns (the
// cluster-wide ones, then those of RoleBindings in ns) until f returns false;
// it returns the errors met resolving role references.
func (a *rbacAuthorizer) visitRules(u user.Info, ns string, f func(*rbacv1.PolicyRule) bool) []error {
	var errs []error
	crbs, err := a.clusterRoleBindings.List(labels.Everything())
	if err != nil {
		return []error{err}
	}
	slices.SortFunc(crbs, func(x, y *rbacv1.ClusterRoleBinding) int { return strings.Compare(x.Name, y.Name) })
	for _, b := range crbs {
		if !appliesTo(u, b.Subjects, "") {
			continue
		}
		rules, err := a.roleRules(b.RoleRef, "")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i := range rules {
			if !f(&rules[i]) {
				return errs
			}
		}
	}
	if ns == "" {
		return errs
	}
	rbs, err := a.roleBindings.RoleBindings(ns).List(labels.Everything())
	if err != nil {
		return append(errs, err)
	}
	slices.SortFunc(rbs, func(x, y *rbacv1.RoleBinding) int { return strings.Compare(x.Name, y.Name) })
	for _, b := range rbs {
		if !appliesTo(u, b.Subjects, ns) {
			continue
		}
		rules, err := a.roleRules(b.RoleRef, ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i := range rules {
			if !f(&rules[i]) {
				return errs
			}
		}
	}
	return errs
}

// roleRules resolves a binding's roleRef: a ClusterRole, or a Role of the
// binding's namespace.
func (a *rbacAuthorizer) roleRules(ref rbacv1.RoleRef, ns string) ([]rbacv1.PolicyRule, error) {
	switch {
	case ref.Kind == "ClusterRole":
		r, err := a.clusterRoles.Get(ref.Name)
		if err != nil {
			return nil, err
		}
		return r.Rules, nil
	case ref.Kind == "Role" && ns != "":
		r, err := a.roles.Roles(ns).Get(ref.Name)
		if err != nil {
			return nil, err
		}
		return r.Rules, nil
	}
	return nil, fmt.Errorf("unsupported role reference kind: %q", ref.Kind)
}

// appliesTo tells whether one of the subjects is the user: its name (User), one
// of its groups (Group), or the service account's user name (ServiceAccount; a
// subject without namespace means the binding's namespace).
func appliesTo(u user.Info, subjects []rbacv1.Subject, bindingNS string) bool {
	for _, s := range subjects {
		switch s.Kind {
		case rbacv1.UserKind:
			if u.GetName() == s.Name {
				return true
			}
		case rbacv1.GroupKind:
			if slices.Contains(u.GetGroups(), s.Name) {
				return true
			}
		case rbacv1.ServiceAccountKind:
			ns := s.Namespace
			if ns == "" {
				ns = bindingNS
			}
			if ns != "" && u.GetName() == serviceaccount.MakeUsername(ns, s.Name) {
				return true
			}
		}
	}
	return false
}

// ruleAllows matches one rule against a request's attributes.
func ruleAllows(attrs authorizer.Attributes, r *rbacv1.PolicyRule) bool {
	if !matchesValue(r.Verbs, attrs.GetVerb()) {
		return false
	}
	if !attrs.IsResourceRequest() {
		return matchesURL(r.NonResourceURLs, attrs.GetPath())
	}
	return matchesValue(r.APIGroups, attrs.GetAPIGroup()) &&
		matchesResource(r.Resources, attrs.GetResource(), attrs.GetSubresource()) &&
		(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, attrs.GetName()))
}

// matchesValue: the list holds "*" or the value.
func matchesValue(list []string, v string) bool {
	for _, x := range list {
		if x == rbacv1.VerbAll || x == v {
			return true
		}
	}
	return false
}

// matchesResource: "*" matches every resource and subresource, "pods/log" the
// log subresource of pods, "*/scale" the scale subresource of any resource.
func matchesResource(list []string, resource, sub string) bool {
	want := resource
	if sub != "" {
		want = resource + "/" + sub
	}
	for _, x := range list {
		switch {
		case x == rbacv1.ResourceAll, x == want:
			return true
		case sub != "" && x == "*/"+sub:
			return true
		}
	}
	return false
}

// matchesURL: "*" matches every path, "/apis/*" every path under "/apis/".
func matchesURL(list []string, path string) bool {
	for _, x := range list {
		switch {
		case x == rbacv1.NonResourceAll, x == path:
			return true
		case strings.HasSuffix(x, "*") && strings.HasPrefix(path, strings.TrimSuffix(x, "*")):
			return true
		}
	}
	return false
}

// RulesFor lists the rules that apply to u in namespace ns (for SelfSubjectRulesReview).
func (a *rbacAuthorizer) RulesFor(ctx context.Context, u user.Info, ns string) ([]authorizer.ResourceRuleInfo, []authorizer.NonResourceRuleInfo, bool, error) {
	var res []authorizer.ResourceRuleInfo
	var nonRes []authorizer.NonResourceRuleInfo
	errs := a.visitRules(u, ns, func(r *rbacv1.PolicyRule) bool {
		if len(r.Resources) > 0 {
			res = append(res, &authorizer.DefaultResourceRuleInfo{Verbs: r.Verbs, APIGroups: r.APIGroups, Resources: r.Resources, ResourceNames: r.ResourceNames})
		}
		if len(r.NonResourceURLs) > 0 {
			nonRes = append(nonRes, &authorizer.DefaultNonResourceRuleInfo{Verbs: r.Verbs, NonResourceURLs: r.NonResourceURLs})
		}
		return true
	})
	if len(errs) > 0 {
		return res, nonRes, false, fmt.Errorf("%v", errs)
	}
	return res, nonRes, false, nil
}

// mastersRules lists everything for members of system:masters.
type mastersRules struct{}

func (mastersRules) RulesFor(ctx context.Context, u user.Info, ns string) ([]authorizer.ResourceRuleInfo, []authorizer.NonResourceRuleInfo, bool, error) {
	if !slices.Contains(u.GetGroups(), user.SystemPrivilegedGroup) {
		return nil, nil, false, nil
	}
	all := []string{"*"}
	return []authorizer.ResourceRuleInfo{&authorizer.DefaultResourceRuleInfo{Verbs: all, APIGroups: all, Resources: all}},
		[]authorizer.NonResourceRuleInfo{&authorizer.DefaultNonResourceRuleInfo{Verbs: all, NonResourceURLs: all}}, false, nil
}

// installRBACGroups serves authorization.k8s.io/v1 (access and rules reviews)
// and authentication.k8s.io/v1 (SelfSubjectReview).
func (m *rbacMode) installRBACGroups(core *genericapiserver.GenericAPIServer) error {
	authz := genericapiserver.NewDefaultAPIGroupInfo(authorizationv1.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	authz.VersionedResourcesStorageMap["v1"] = reviewStorages(m.authorizer, m.resolver)
	authn := genericapiserver.NewDefaultAPIGroupInfo(authenticationv1.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	authn.VersionedResourcesStorageMap["v1"] = selfReviewStorages()
	if err := core.InstallAPIGroups(&authn, &authz); err != nil {
		return fmt.Errorf("failed to install the authentication and authorization groups: %w", err)
	}
	return nil
}
