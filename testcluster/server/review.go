package main

// Access reviews (--rbac only): authorization.k8s.io/v1 SelfSubjectAccessReview
// (what `kubectl auth can-i` sends), SubjectAccessReview,
// LocalSubjectAccessReview, SelfSubjectRulesReview (`kubectl auth can-i
// --list`), and authentication.k8s.io/v1 SelfSubjectReview (`kubectl auth
// whoami`). Create-only, nothing is stored; reviews ask the server's own
// authorizer.

import (
	"context"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
)

// reviewREST is a create-only endpoint that computes a response from the request.
type reviewREST struct {
	newObj     func() runtime.Object
	singular   string
	namespaced bool
	review     func(ctx context.Context, u user.Info, obj runtime.Object) error
}

var _ rest.Creater = &reviewREST{}
var _ rest.Scoper = &reviewREST{}
var _ rest.SingularNameProvider = &reviewREST{}

func (r *reviewREST) New() runtime.Object     { return r.newObj() }
func (r *reviewREST) Destroy()                {}
func (r *reviewREST) NamespaceScoped() bool   { return r.namespaced }
func (r *reviewREST) GetSingularName() string { return r.singular }
func (r *reviewREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	u, ok := request.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewBadRequest("no user on the request")
	}
	if createValidation != nil {
		if err := createValidation(ctx, obj.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	if err := r.review(ctx, u, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

func reviewStorages(a authorizer.Authorizer, rules authorizer.RuleResolver) map[string]rest.Storage {
	return map[string]rest.Storage{
		"selfsubjectaccessreviews": &reviewREST{
			newObj: func() runtime.Object { return &authorizationv1.SelfSubjectAccessReview{} }, singular: "selfsubjectaccessreview",
			review: func(ctx context.Context, u user.Info, obj runtime.Object) error {
				r := obj.(*authorizationv1.SelfSubjectAccessReview)
				if err := validateAttributes("SelfSubjectAccessReview", r.Spec.ResourceAttributes, r.Spec.NonResourceAttributes); err != nil {
					return err
				}
				r.Status = evaluate(ctx, a, u, r.Spec.ResourceAttributes, r.Spec.NonResourceAttributes)
				return nil
			},
		},
		"subjectaccessreviews": &reviewREST{
			newObj: func() runtime.Object { return &authorizationv1.SubjectAccessReview{} }, singular: "subjectaccessreview",
			review: func(ctx context.Context, _ user.Info, obj runtime.Object) error {
				r := obj.(*authorizationv1.SubjectAccessReview)
				if err := validateSubject("SubjectAccessReview", &r.Spec); err != nil {
					return err
				}
				r.Status = evaluate(ctx, a, specUser(&r.Spec), r.Spec.ResourceAttributes, r.Spec.NonResourceAttributes)
				return nil
			},
		},
		"localsubjectaccessreviews": &reviewREST{
			newObj: func() runtime.Object { return &authorizationv1.LocalSubjectAccessReview{} }, singular: "localsubjectaccessreview", namespaced: true,
			review: func(ctx context.Context, _ user.Info, obj runtime.Object) error {
				r := obj.(*authorizationv1.LocalSubjectAccessReview)
				if err := validateSubject("LocalSubjectAccessReview", &r.Spec); err != nil {
					return err
				}
				ns := request.NamespaceValue(ctx)
				if r.Spec.ResourceAttributes == nil || r.Spec.ResourceAttributes.Namespace != ns {
					return invalid("LocalSubjectAccessReview", field.Invalid(field.NewPath("spec", "resourceAttributes", "namespace"), ns, "must match metadata.namespace"))
				}
				r.Status = evaluate(ctx, a, specUser(&r.Spec), r.Spec.ResourceAttributes, nil)
				return nil
			},
		},
		"selfsubjectrulesreviews": &reviewREST{
			newObj: func() runtime.Object { return &authorizationv1.SelfSubjectRulesReview{} }, singular: "selfsubjectrulesreview",
			review: func(ctx context.Context, u user.Info, obj runtime.Object) error {
				r := obj.(*authorizationv1.SelfSubjectRulesReview)
				if r.Spec.Namespace == "" {
					return invalid("SelfSubjectRulesReview", field.Required(field.NewPath("spec", "namespace"), "no namespace given"))
				}
				res, nonRes, incomplete, err := rules.RulesFor(ctx, u, r.Spec.Namespace)
				r.Status = authorizationv1.SubjectRulesReviewStatus{Incomplete: incomplete,
					ResourceRules: []authorizationv1.ResourceRule{}, NonResourceRules: []authorizationv1.NonResourceRule{}}
				if err != nil {
					r.Status.EvaluationError = err.Error()
				}
				for _, x := range res {
					r.Status.ResourceRules = append(r.Status.ResourceRules, authorizationv1.ResourceRule{
						Verbs: x.GetVerbs(), APIGroups: x.GetAPIGroups(), Resources: x.GetResources(), ResourceNames: x.GetResourceNames()})
				}
				for _, x := range nonRes {
					r.Status.NonResourceRules = append(r.Status.NonResourceRules, authorizationv1.NonResourceRule{
						Verbs: x.GetVerbs(), NonResourceURLs: x.GetNonResourceURLs()})
				}
				return nil
			},
		},
	}
}

func selfReviewStorages() map[string]rest.Storage {
	return map[string]rest.Storage{
		"selfsubjectreviews": &reviewREST{
			newObj: func() runtime.Object { return &authenticationv1.SelfSubjectReview{} }, singular: "selfsubjectreview",
			review: func(ctx context.Context, u user.Info, obj runtime.Object) error {
				r := obj.(*authenticationv1.SelfSubjectReview)
				r.Status.UserInfo = authenticationv1.UserInfo{Username: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups()}
				if extra := u.GetExtra(); len(extra) > 0 {
					r.Status.UserInfo.Extra = map[string]authenticationv1.ExtraValue{}
					for k, v := range extra {
						r.Status.UserInfo.Extra[k] = v
					}
				}
				return nil
			},
		},
	}
}

// evaluate asks the authorizer about the attributes of a review.
func evaluate(ctx context.Context, a authorizer.Authorizer, u user.Info, ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes) authorizationv1.SubjectAccessReviewStatus {
	attrs := authorizer.AttributesRecord{User: u}
	if ra != nil {
		attrs.Verb = ra.Verb
		attrs.Namespace = ra.Namespace
		attrs.APIGroup = ra.Group
		attrs.APIVersion = ra.Version
		attrs.Resource = ra.Resource
		attrs.Subresource = ra.Subresource
		attrs.Name = ra.Name
		attrs.ResourceRequest = true
	} else if nra != nil {
		attrs.Verb = nra.Verb
		attrs.Path = nra.Path
	}
	decision, reason, err := a.Authorize(ctx, attrs)
	status := authorizationv1.SubjectAccessReviewStatus{
		Allowed: decision == authorizer.DecisionAllow,
		Denied:  decision == authorizer.DecisionDeny,
		Reason:  reason,
	}
	if err != nil {
		status.EvaluationError = err.Error()
	}
	return status
}

func specUser(s *authorizationv1.SubjectAccessReviewSpec) user.Info {
	u := &user.DefaultInfo{Name: s.User, UID: s.UID, Groups: s.Groups}
	if len(s.Extra) > 0 {
		u.Extra = map[string][]string{}
		for k, v := range s.Extra {
			u.Extra[k] = v
		}
	}
	return u
}

func validateAttributes(kind string, ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes) error {
	p := field.NewPath("spec")
	switch {
	case ra == nil && nra == nil:
		return invalid(kind, field.Required(p.Child("resourceAttributes"), "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
	case ra != nil && nra != nil:
		return invalid(kind, field.Invalid(p.Child("nonResourceAttributes"), nra, "cannot be specified in combination with resourceAttributes"))
	}
	return nil
}

func validateSubject(kind string, s *authorizationv1.SubjectAccessReviewSpec) error {
	if err := validateAttributes(kind, s.ResourceAttributes, s.NonResourceAttributes); err != nil {
		return err
	}
	if s.User == "" && len(s.Groups) == 0 {
		return invalid(kind, field.Invalid(field.NewPath("spec", "user"), s.User, "at least one of user or group must be specified"))
	}
	return nil
}

func invalid(kind string, errs ...*field.Error) error {
	return apierrors.NewInvalid(authorizationv1.SchemeGroupVersion.WithKind(kind).GroupKind(), "", errs)
}
