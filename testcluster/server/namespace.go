package main

// Namespace deletion like a real cluster: DELETE marks the namespace
// Terminating (spec.finalizers holds "kubernetes"); the namespace controller
// deletes its content, then finalizes and deletes it.

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// namespaceREST wraps the namespace store with two-phase deletion.
type namespaceREST struct {
	*REST
}

// Delete marks a namespace with finalizers as Terminating, or deletes it.
func (r *namespaceREST) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	obj, err := r.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, false, err
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return nil, false, apierrors.NewInternalError(fmt.Errorf("unexpected object type %T", obj))
	}
	if options == nil {
		options = metav1.NewDeleteOptions(0)
	}
	if p := options.Preconditions; p != nil {
		if p.UID != nil && *p.UID != ns.UID {
			return nil, false, apierrors.NewConflict(corev1.Resource("namespaces"), name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, ns.UID))
		}
		if p.ResourceVersion != nil && *p.ResourceVersion != ns.ResourceVersion {
			return nil, false, apierrors.NewConflict(corev1.Resource("namespaces"), name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, ns.ResourceVersion))
		}
	}
	if len(ns.Spec.Finalizers) == 0 {
		return r.Store.Delete(ctx, name, deleteValidation, options)
	}
	if deleteValidation != nil {
		if err := deleteValidation(ctx, ns); err != nil {
			return nil, false, err
		}
	}
	key, err := r.Store.KeyFunc(ctx, name)
	if err != nil {
		return nil, false, err
	}
	out := r.Store.NewFunc()
	uid := ns.UID
	dryRun := len(options.DryRun) > 0
	err = r.Store.Storage.GuaranteedUpdate(ctx, key, out, false, &storage.Preconditions{UID: &uid},
		storage.SimpleUpdate(func(existing runtime.Object) (runtime.Object, error) {
			e, ok := existing.(*corev1.Namespace)
			if !ok {
				return nil, fmt.Errorf("unexpected object type %T", existing)
			}
			if e.DeletionTimestamp == nil {
				now := metav1.Now()
				e.DeletionTimestamp = &now
				e.DeletionGracePeriodSeconds = ptr(int64(0))
			}
			e.Status.Phase = corev1.NamespaceTerminating
			return e, nil
		}), dryRun, nil)
	if err != nil {
		return nil, false, err
	}
	return out, false, nil
}

// namespaceFinalizeREST serves namespaces/finalize: only spec.finalizers change.
type namespaceFinalizeREST struct {
	store *REST
}

func newNamespaceFinalizeREST(main *REST) *namespaceFinalizeREST {
	s := *main.Store
	st := s.UpdateStrategy.(strategy)
	s.UpdateStrategy = finalizeStrategy{st}
	s.ResetFieldsStrategy = finalizeStrategy{st}
	return &namespaceFinalizeREST{store: &REST{Store: &s, spec: main.spec}}
}

// New returns an empty namespace.
func (r *namespaceFinalizeREST) New() runtime.Object { return &corev1.Namespace{} }

// Destroy cleans up.
func (r *namespaceFinalizeREST) Destroy() {}

// Update changes spec.finalizers.
func (r *namespaceFinalizeREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}

type finalizeStrategy struct{ strategy }

func (s finalizeStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	n, ok1 := obj.(*corev1.Namespace)
	o, ok2 := old.(*corev1.Namespace)
	if !ok1 || !ok2 {
		return
	}
	finalizers := n.Spec.Finalizers
	*n = *o.DeepCopy()
	n.Spec.Finalizers = finalizers
}

func (s finalizeStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{"v1": fieldpath.NewSet(fieldpath.MakePathOrDie("status"))}
}
