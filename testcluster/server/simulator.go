package main

// The workload simulator: with no kubelet or scheduler, it gives workloads the
// status a real cluster would report once their pods run. Deployments get a
// ReplicaSet (owned, with pod-template-hash) and become Available after the
// configured delay; Jobs complete. An image whose name contains "fail" never
// becomes available: Deployments report ProgressDeadlineExceeded and Jobs fail.
// HorizontalPodAutoscalers get the status the HPA controller writes in a
// cluster with a metrics server: the target's replicas and the AbleToScale,
// ScalingActive and ScalingLimited conditions (AbleToScale False when the
// target does not exist).
// Everything is driven by informers and a delaying work queue.

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

type simKey struct {
	kind, namespace, name string
}

type simSeen struct {
	generation int64
	at         time.Time
}

type simulator struct {
	kube  kubernetes.Interface
	delay time.Duration
	queue workqueue.TypedRateLimitingInterface[simKey]

	deployments, replicaSets, statefulSets, daemonSets, jobs, pods, pvcs, hpas cache.Store
	rsIndex                                                                    cache.Indexer

	mu   sync.Mutex
	seen map[simKey]simSeen
}

const (
	kindDeployment  = "Deployment"
	kindReplicaSet  = "ReplicaSet"
	kindStatefulSet = "StatefulSet"
	kindDaemonSet   = "DaemonSet"
	kindJob         = "Job"
	kindPod         = "Pod"
	kindPVC         = "PersistentVolumeClaim"
	kindHPA         = "HorizontalPodAutoscaler"

	revisionAnnotation = "deployment.kubernetes.io/revision"
	hashLabel          = appsv1.DefaultDeploymentUniqueLabelKey
)

func newSimulator(kube kubernetes.Interface, f informers.SharedInformerFactory, delay time.Duration) (*simulator, error) {
	s := &simulator{
		kube:  kube,
		delay: delay,
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[simKey](20*time.Millisecond, 5*time.Second)),
		seen:  map[simKey]simSeen{},
	}
	handler := func(kind string) cache.ResourceEventHandler {
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj interface{}) { s.enqueue(kind, obj) },
			UpdateFunc: func(_, obj interface{}) { s.enqueue(kind, obj) },
			DeleteFunc: func(obj interface{}) { s.forget(kind, obj) },
		}
	}
	type inf struct {
		kind string
		i    cache.SharedIndexInformer
		dst  *cache.Store
	}
	rsInformer := f.Apps().V1().ReplicaSets().Informer()
	if err := rsInformer.AddIndexers(cache.Indexers{"owner": func(obj interface{}) ([]string, error) {
		rs, ok := obj.(*appsv1.ReplicaSet)
		if !ok {
			return nil, nil
		}
		if c := metav1.GetControllerOf(rs); c != nil {
			return []string{string(c.UID)}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("failed to index replica sets: %w", err)
	}
	s.rsIndex = rsInformer.GetIndexer()
	for _, x := range []inf{
		{kindDeployment, f.Apps().V1().Deployments().Informer(), &s.deployments},
		{kindReplicaSet, rsInformer, &s.replicaSets},
		{kindStatefulSet, f.Apps().V1().StatefulSets().Informer(), &s.statefulSets},
		{kindDaemonSet, f.Apps().V1().DaemonSets().Informer(), &s.daemonSets},
		{kindJob, f.Batch().V1().Jobs().Informer(), &s.jobs},
		{kindPod, f.Core().V1().Pods().Informer(), &s.pods},
		{kindPVC, f.Core().V1().PersistentVolumeClaims().Informer(), &s.pvcs},
		{kindHPA, f.Autoscaling().V2().HorizontalPodAutoscalers().Informer(), &s.hpas},
	} {
		if _, err := x.i.AddEventHandler(handler(x.kind)); err != nil {
			return nil, fmt.Errorf("failed to watch %s: %w", x.kind, err)
		}
		*x.dst = x.i.GetStore()
	}
	return s, nil
}

func (s *simulator) enqueue(kind string, obj interface{}) {
	m, err := metaOf(obj)
	if err != nil {
		return
	}
	s.queue.Add(simKey{kind, m.GetNamespace(), m.GetName()})
	// A ReplicaSet change may change its Deployment's status.
	if rs, ok := obj.(*appsv1.ReplicaSet); ok {
		if c := metav1.GetControllerOf(rs); c != nil && c.Kind == kindDeployment {
			s.queue.Add(simKey{kindDeployment, rs.Namespace, c.Name})
		}
	}
}

func (s *simulator) forget(kind string, obj interface{}) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := metaOf(obj)
	if err != nil {
		return
	}
	s.mu.Lock()
	delete(s.seen, simKey{kind, m.GetNamespace(), m.GetName()})
	s.mu.Unlock()
}

func metaOf(obj interface{}) (metav1.Object, error) {
	if m, ok := obj.(metav1.Object); ok {
		return m, nil
	}
	return nil, fmt.Errorf("not an object: %T", obj)
}

// readyIn returns how long until the given generation counts as rolled out.
func (s *simulator) readyIn(k simKey, generation int64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen, ok := s.seen[k]
	if !ok || seen.generation != generation {
		seen = simSeen{generation: generation, at: time.Now()}
		s.seen[k] = seen
	}
	return time.Until(seen.at.Add(s.delay))
}

func (s *simulator) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		s.queue.ShutDown()
	}()
	for i := 0; i < 2; i++ {
		go func() {
			for {
				k, quit := s.queue.Get()
				if quit {
					return
				}
				after, err := s.sync(ctx, k)
				switch {
				case err != nil:
					if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
						klog.V(2).Infof("simulator: %s %s/%s: %v", k.kind, k.namespace, k.name, err)
					}
					s.queue.AddRateLimited(k)
				default:
					s.queue.Forget(k)
					if after > 0 {
						s.queue.AddAfter(k, after)
					}
				}
				s.queue.Done(k)
			}
		}()
	}
	<-ctx.Done()
}

func (s *simulator) sync(ctx context.Context, k simKey) (time.Duration, error) {
	key := k.name
	if k.namespace != "" {
		key = k.namespace + "/" + k.name
	}
	var store cache.Store
	switch k.kind {
	case kindDeployment:
		store = s.deployments
	case kindReplicaSet:
		store = s.replicaSets
	case kindStatefulSet:
		store = s.statefulSets
	case kindDaemonSet:
		store = s.daemonSets
	case kindJob:
		store = s.jobs
	case kindPod:
		store = s.pods
	case kindPVC:
		store = s.pvcs
	case kindHPA:
		store = s.hpas
	}
	obj, exists, err := store.GetByKey(key)
	if err != nil || !exists {
		return 0, err
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return s.syncDeployment(ctx, k, o.DeepCopy())
	case *appsv1.ReplicaSet:
		return s.syncReplicaSet(ctx, k, o.DeepCopy())
	case *appsv1.StatefulSet:
		return s.syncStatefulSet(ctx, k, o.DeepCopy())
	case *appsv1.DaemonSet:
		return s.syncDaemonSet(ctx, k, o.DeepCopy())
	case *batchv1.Job:
		return s.syncJob(ctx, k, o.DeepCopy())
	case *corev1.Pod:
		return s.syncPod(ctx, k, o.DeepCopy())
	case *corev1.PersistentVolumeClaim:
		return s.syncPVC(ctx, k, o.DeepCopy())
	case *autoscalingv2.HorizontalPodAutoscaler:
		return s.syncHPA(ctx, k, o.DeepCopy())
	}
	return 0, nil
}

// failing reports whether a pod template can never become ready.
func failing(t *corev1.PodTemplateSpec) bool {
	for _, cs := range [][]corev1.Container{t.Spec.InitContainers, t.Spec.Containers} {
		for _, c := range cs {
			if strings.Contains(c.Image, "fail") {
				return true
			}
		}
	}
	return false
}

func templateHash(t *corev1.PodTemplateSpec) string {
	b, err := json.Marshal(t)
	if err != nil {
		return "0"
	}
	h := fnv.New32a()
	_, _ = h.Write(b)
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// condition sets a condition, keeping lastTransitionTime when the status is unchanged.
func setDeploymentCondition(conds []appsv1.DeploymentCondition, c appsv1.DeploymentCondition) []appsv1.DeploymentCondition {
	now := metav1.Now()
	c.LastUpdateTime, c.LastTransitionTime = now, now
	for i := range conds {
		if conds[i].Type == c.Type {
			if conds[i].Status == c.Status {
				c.LastTransitionTime = conds[i].LastTransitionTime
				if conds[i].Reason == c.Reason && conds[i].Message == c.Message {
					c.LastUpdateTime = conds[i].LastUpdateTime
				}
			}
			conds[i] = c
			return conds
		}
	}
	return append(conds, c)
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func (s *simulator) syncDeployment(ctx context.Context, k simKey, d *appsv1.Deployment) (time.Duration, error) {
	if d.DeletionTimestamp != nil {
		return 0, nil
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	hash := templateHash(&d.Spec.Template)
	owned, err := s.rsIndex.ByIndex("owner", string(d.UID))
	if err != nil {
		return 0, err
	}
	var newRS *appsv1.ReplicaSet
	var oldRSs []*appsv1.ReplicaSet
	maxRevision := int64(0)
	for _, o := range owned {
		rs, ok := o.(*appsv1.ReplicaSet)
		if !ok || rs.DeletionTimestamp != nil {
			continue
		}
		if r, err := strconv.ParseInt(rs.Annotations[revisionAnnotation], 10, 64); err == nil && r > maxRevision {
			maxRevision = r
		}
		if rs.Labels[hashLabel] == hash {
			newRS = rs.DeepCopy()
		} else {
			oldRSs = append(oldRSs, rs.DeepCopy())
		}
	}
	if newRS == nil {
		newRS, err = s.createReplicaSet(ctx, d, hash, replicas, maxRevision+1)
		if err != nil {
			return 0, err
		}
	} else if newRS.Spec.Replicas == nil || *newRS.Spec.Replicas != replicas {
		newRS.Spec.Replicas = ptr(replicas)
		if newRS, err = s.kube.AppsV1().ReplicaSets(d.Namespace).Update(ctx, newRS, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	revision := newRS.Annotations[revisionAnnotation]
	if revision != "" && d.Annotations[revisionAnnotation] != revision {
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[revisionAnnotation] = revision
		updated, err := s.kube.AppsV1().Deployments(d.Namespace).Update(ctx, d, metav1.UpdateOptions{})
		if err != nil {
			return 0, err
		}
		d = updated
	}

	wait := s.readyIn(k, d.Generation)
	fails := failing(&d.Spec.Template)
	st := d.Status.DeepCopy()
	st.ObservedGeneration = d.Generation
	st.Replicas = replicas
	st.UpdatedReplicas = replicas
	rsName := newRS.Name
	wasAvailable := false
	if c := deploymentCondition(d, appsv1.DeploymentAvailable); c != nil && c.Status == corev1.ConditionTrue {
		wasAvailable = true
	}
	switch {
	case wait > 0 && replicas > 0:
		st.ReadyReplicas, st.AvailableReplicas = 0, 0
		if wasAvailable {
			// Rolling update: the old pods still serve, no new pod is ready yet.
			st.ReadyReplicas, st.AvailableReplicas, st.UpdatedReplicas = replicas, replicas, 0
		}
		st.UnavailableReplicas = replicas - st.AvailableReplicas
		if !wasAvailable {
			st.Conditions = setDeploymentCondition(st.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse, Reason: "MinimumReplicasUnavailable", Message: "Deployment does not have minimum availability."})
		}
		reason, msg := "ReplicaSetUpdated", fmt.Sprintf("ReplicaSet %q is progressing.", rsName)
		if c := deploymentCondition(d, appsv1.DeploymentProgressing); c == nil {
			reason, msg = "NewReplicaSetCreated", fmt.Sprintf("Created new replica set %q", rsName)
		}
		st.Conditions = setDeploymentCondition(st.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: reason, Message: msg})
	case fails:
		st.ReadyReplicas, st.AvailableReplicas, st.UnavailableReplicas = 0, 0, replicas
		st.Conditions = setDeploymentCondition(st.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse, Reason: "MinimumReplicasUnavailable", Message: "Deployment does not have minimum availability."})
		st.Conditions = setDeploymentCondition(st.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: fmt.Sprintf("ReplicaSet %q has timed out progressing.", rsName)})
	default:
		st.ReadyReplicas, st.AvailableReplicas, st.UnavailableReplicas = replicas, replicas, 0
		st.Conditions = setDeploymentCondition(st.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", Message: "Deployment has minimum availability."})
		st.Conditions = setDeploymentCondition(st.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable", Message: fmt.Sprintf("ReplicaSet %q has successfully progressed.", rsName)})
		for _, old := range oldRSs {
			if old.Spec.Replicas == nil || *old.Spec.Replicas != 0 {
				old.Spec.Replicas = ptr(int32(0))
				if _, err := s.kube.AppsV1().ReplicaSets(old.Namespace).Update(ctx, old, metav1.UpdateOptions{}); err != nil {
					return 0, err
				}
			}
		}
	}
	if !equality.Semantic.DeepEqual(st, &d.Status) {
		d.Status = *st
		if _, err := s.kube.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	if wait > 0 && replicas > 0 {
		return wait, nil
	}
	return 0, nil
}

func (s *simulator) createReplicaSet(ctx context.Context, d *appsv1.Deployment, hash string, replicas int32, revision int64) (*appsv1.ReplicaSet, error) {
	tmpl := d.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[hashLabel] = hash
	sel := d.Spec.Selector.DeepCopy()
	if sel == nil {
		sel = &metav1.LabelSelector{}
	}
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[hashLabel] = hash
	maxSurge := int32(0)
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxSurge != nil {
		if v, err := intOrPercent(ru.MaxSurge.String(), replicas, true); err == nil {
			maxSurge = v
		}
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:      d.Name + "-" + hash,
			Namespace: d.Namespace,
			Labels:    tmpl.Labels,
			Annotations: map[string]string{
				"deployment.kubernetes.io/desired-replicas": strconv.Itoa(int(replicas)),
				"deployment.kubernetes.io/max-replicas":     strconv.Itoa(int(replicas + maxSurge)),
				revisionAnnotation:                          strconv.FormatInt(revision, 10),
			},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind(kindDeployment))},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas:        ptr(replicas),
			MinReadySeconds: d.Spec.MinReadySeconds,
			Selector:        sel,
			Template:        *tmpl,
		},
	}
	created, err := s.kube.AppsV1().ReplicaSets(d.Namespace).Create(ctx, rs, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return s.kube.AppsV1().ReplicaSets(d.Namespace).Get(ctx, rs.Name, metav1.GetOptions{})
	}
	return created, err
}

// intOrPercent resolves "25%" or "3" against a total.
func intOrPercent(v string, total int32, roundUp bool) (int32, error) {
	if strings.HasSuffix(v, "%") {
		p, err := strconv.Atoi(strings.TrimSuffix(v, "%"))
		if err != nil {
			return 0, err
		}
		x := int64(p) * int64(total)
		if roundUp {
			return int32((x + 99) / 100), nil
		}
		return int32(x / 100), nil
	}
	n, err := strconv.Atoi(v)
	return int32(n), err
}

func (s *simulator) syncReplicaSet(ctx context.Context, k simKey, rs *appsv1.ReplicaSet) (time.Duration, error) {
	if rs.DeletionTimestamp != nil {
		return 0, nil
	}
	replicas := int32(1)
	if rs.Spec.Replicas != nil {
		replicas = *rs.Spec.Replicas
	}
	wait := s.readyIn(k, rs.Generation)
	st := rs.Status.DeepCopy()
	st.ObservedGeneration = rs.Generation
	st.Replicas, st.FullyLabeledReplicas = replicas, replicas
	ready := replicas
	if (wait > 0 && st.ReadyReplicas < replicas) || failing(&rs.Spec.Template) {
		ready = 0
	}
	st.ReadyReplicas, st.AvailableReplicas = ready, ready
	if !equality.Semantic.DeepEqual(st, &rs.Status) {
		rs.Status = *st
		if _, err := s.kube.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, rs, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	if wait > 0 && ready < replicas && !failing(&rs.Spec.Template) {
		return wait, nil
	}
	return 0, nil
}

func (s *simulator) syncStatefulSet(ctx context.Context, k simKey, sts *appsv1.StatefulSet) (time.Duration, error) {
	if sts.DeletionTimestamp != nil {
		return 0, nil
	}
	replicas := int32(1)
	if sts.Spec.Replicas != nil {
		replicas = *sts.Spec.Replicas
	}
	wait := s.readyIn(k, sts.Generation)
	fails := failing(&sts.Spec.Template)
	revision := sts.Name + "-" + templateHash(&sts.Spec.Template)
	st := sts.Status.DeepCopy()
	st.ObservedGeneration = sts.Generation
	st.Replicas = replicas
	st.UpdateRevision = revision
	if st.CollisionCount == nil {
		st.CollisionCount = ptr(int32(0))
	}
	if wait > 0 || fails {
		if st.CurrentRevision == "" {
			st.CurrentRevision = revision
		}
		if st.CurrentRevision == revision {
			st.ReadyReplicas, st.AvailableReplicas, st.CurrentReplicas, st.UpdatedReplicas = 0, 0, 0, 0
		} else {
			st.UpdatedReplicas = 0
		}
	} else {
		st.CurrentRevision = revision
		st.ReadyReplicas, st.AvailableReplicas, st.CurrentReplicas, st.UpdatedReplicas = replicas, replicas, replicas, replicas
	}
	if !equality.Semantic.DeepEqual(st, &sts.Status) {
		sts.Status = *st
		if _, err := s.kube.AppsV1().StatefulSets(sts.Namespace).UpdateStatus(ctx, sts, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	if wait > 0 && !fails {
		return wait, nil
	}
	return 0, nil
}

func (s *simulator) syncDaemonSet(ctx context.Context, k simKey, ds *appsv1.DaemonSet) (time.Duration, error) {
	if ds.DeletionTimestamp != nil {
		return 0, nil
	}
	wait := s.readyIn(k, ds.Generation)
	fails := failing(&ds.Spec.Template)
	// One simulated node.
	st := ds.Status.DeepCopy()
	st.ObservedGeneration = ds.Generation
	st.DesiredNumberScheduled, st.CurrentNumberScheduled, st.NumberMisscheduled = 1, 1, 0
	if wait > 0 || fails {
		st.UpdatedNumberScheduled, st.NumberReady, st.NumberAvailable, st.NumberUnavailable = 0, 0, 0, 1
	} else {
		st.UpdatedNumberScheduled, st.NumberReady, st.NumberAvailable, st.NumberUnavailable = 1, 1, 1, 0
	}
	if !equality.Semantic.DeepEqual(st, &ds.Status) {
		ds.Status = *st
		if _, err := s.kube.AppsV1().DaemonSets(ds.Namespace).UpdateStatus(ctx, ds, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	if wait > 0 && !fails {
		return wait, nil
	}
	return 0, nil
}

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func (s *simulator) syncJob(ctx context.Context, k simKey, j *batchv1.Job) (time.Duration, error) {
	if j.DeletionTimestamp != nil || jobFinished(j) || (j.Spec.Suspend != nil && *j.Spec.Suspend) {
		return 0, nil
	}
	wait := s.readyIn(k, 1)
	completions := int32(1)
	if j.Spec.Completions != nil {
		completions = *j.Spec.Completions
	}
	parallelism := int32(1)
	if j.Spec.Parallelism != nil {
		parallelism = *j.Spec.Parallelism
	}
	st := j.Status.DeepCopy()
	now := metav1.Now()
	if st.StartTime == nil {
		st.StartTime = &now
	}
	if st.UncountedTerminatedPods == nil {
		st.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
	}
	st.Ready, st.Terminating = ptr(int32(0)), ptr(int32(0))
	switch {
	case wait > 0:
		st.Active = parallelism
		if parallelism > completions {
			st.Active = completions
		}
	case failing(&j.Spec.Template):
		backoff := int32(6)
		if j.Spec.BackoffLimit != nil {
			backoff = *j.Spec.BackoffLimit
		}
		st.Active, st.Failed = 0, backoff+1
		msg := "Job has reached the specified backoff limit"
		st.Conditions = append(st.Conditions,
			batchv1.JobCondition{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded, Message: msg, LastProbeTime: now, LastTransitionTime: now},
			batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonBackoffLimitExceeded, Message: msg, LastProbeTime: now, LastTransitionTime: now})
	default:
		st.Active, st.Succeeded = 0, completions
		st.CompletionTime = &now
		msg := "Reached expected number of succeeded pods"
		st.Conditions = append(st.Conditions,
			batchv1.JobCondition{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached, Message: msg, LastProbeTime: now, LastTransitionTime: now},
			batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached, Message: msg, LastProbeTime: now, LastTransitionTime: now})
	}
	if !equality.Semantic.DeepEqual(st, &j.Status) {
		j.Status = *st
		if _, err := s.kube.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	if wait > 0 {
		return wait, nil
	}
	return 0, nil
}

// syncPod runs a pod on the simulated node: Running and Ready after the
// delay, or stuck pulling an image whose name contains "fail".
func (s *simulator) syncPod(ctx context.Context, k simKey, p *corev1.Pod) (time.Duration, error) {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return 0, nil
	}
	wait := s.readyIn(k, 1)
	fails := failing(&corev1.PodTemplateSpec{Spec: p.Spec})
	st := p.Status.DeepCopy()
	now := metav1.Now()
	if st.StartTime == nil {
		st.StartTime = &now
	}
	st.HostIP, st.HostIPs = "10.0.0.2", []corev1.HostIP{{IP: "10.0.0.2"}}
	if st.PodIP == "" {
		ip := alloc.podIP()
		st.PodIP, st.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	}
	if st.QOSClass == "" {
		st.QOSClass = qosClass(&p.Spec)
	}
	ready := wait <= 0 && !fails
	cond := func(t corev1.PodConditionType, ok bool) {
		status := corev1.ConditionFalse
		if ok {
			status = corev1.ConditionTrue
		}
		for i := range st.Conditions {
			if st.Conditions[i].Type == t {
				if st.Conditions[i].Status != status {
					st.Conditions[i].Status, st.Conditions[i].LastTransitionTime = status, now
				}
				return
			}
		}
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: status, LastTransitionTime: now})
	}
	cond(corev1.PodScheduled, true)
	cond(corev1.PodInitialized, true)
	cond(corev1.ContainersReady, ready)
	cond(corev1.PodReady, ready)
	var statuses []corev1.ContainerStatus
	for _, c := range p.Spec.Containers {
		cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: "", Ready: ready, Started: ptr(ready)}
		switch {
		case ready:
			var started metav1.Time
			for _, old := range p.Status.ContainerStatuses {
				if old.Name == c.Name && old.State.Running != nil {
					started = old.State.Running.StartedAt
				}
			}
			if started.IsZero() {
				started = now
			}
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
		case strings.Contains(c.Image, "fail"):
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: fmt.Sprintf("Back-off pulling image %q", c.Image)}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		statuses = append(statuses, cs)
	}
	st.ContainerStatuses = statuses
	st.Phase = corev1.PodPending
	if ready {
		st.Phase = corev1.PodRunning
	}
	if !equality.Semantic.DeepEqual(st, &p.Status) {
		p.Status = *st
		if _, err := s.kube.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	if wait > 0 && !fails {
		return wait, nil
	}
	return 0, nil
}

func qosClass(spec *corev1.PodSpec) corev1.PodQOSClass {
	hasAny, guaranteed := false, true
	for _, c := range spec.Containers {
		if len(c.Resources.Requests) > 0 || len(c.Resources.Limits) > 0 {
			hasAny = true
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			l, okL := c.Resources.Limits[r]
			q, okR := c.Resources.Requests[r]
			if !okL || (okR && q.Cmp(l) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !hasAny:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

// syncPVC binds a claim to a simulated volume after the delay.
func (s *simulator) syncPVC(ctx context.Context, k simKey, c *corev1.PersistentVolumeClaim) (time.Duration, error) {
	if c.DeletionTimestamp != nil || c.Status.Phase == corev1.ClaimBound {
		return 0, nil
	}
	if wait := s.readyIn(k, 1); wait > 0 {
		return wait, nil
	}
	if c.Spec.VolumeName == "" {
		c.Spec.VolumeName = "pvc-" + string(c.UID)
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
		c.Annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
		updated, err := s.kube.CoreV1().PersistentVolumeClaims(c.Namespace).Update(ctx, c, metav1.UpdateOptions{})
		if err != nil {
			return 0, err
		}
		c = updated
	}
	c.Status.Phase = corev1.ClaimBound
	c.Status.AccessModes = c.Spec.AccessModes
	c.Status.Capacity = c.Spec.Resources.Requests.DeepCopy()
	_, err := s.kube.CoreV1().PersistentVolumeClaims(c.Namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{})
	return 0, err
}

// hpaTargetGrace is how long an autoscaler whose target does not exist yet
// waits before it reports FailedGetScale (its target is usually applied in the
// same sync, a moment later).
const hpaTargetGrace = 10 * time.Second

// targetReplicas returns the current replicas of an autoscaler's target, as
// its scale subresource reports them, and whether the target exists.
func (s *simulator) targetReplicas(ns string, ref autoscalingv2.CrossVersionObjectReference) (int32, bool) {
	key := ns + "/" + ref.Name
	var store cache.Store
	switch ref.Kind {
	case kindDeployment:
		store = s.deployments
	case kindReplicaSet:
		store = s.replicaSets
	case kindStatefulSet:
		store = s.statefulSets
	default:
		return 0, false
	}
	obj, exists, err := store.GetByKey(key)
	if err != nil || !exists {
		return 0, false
	}
	var spec *int32
	var status int32
	switch o := obj.(type) {
	case *appsv1.Deployment:
		spec, status = o.Spec.Replicas, o.Status.Replicas
	case *appsv1.ReplicaSet:
		spec, status = o.Spec.Replicas, o.Status.Replicas
	case *appsv1.StatefulSet:
		spec, status = o.Spec.Replicas, o.Status.Replicas
	}
	if status == 0 && spec != nil {
		status = *spec
	}
	return status, true
}

func setHPACondition(conds []autoscalingv2.HorizontalPodAutoscalerCondition, c autoscalingv2.HorizontalPodAutoscalerCondition) []autoscalingv2.HorizontalPodAutoscalerCondition {
	for i := range conds {
		if conds[i].Type == c.Type {
			if conds[i].Status == c.Status && conds[i].Reason == c.Reason && conds[i].Message == c.Message {
				return conds
			}
			if conds[i].Status == c.Status {
				c.LastTransitionTime = conds[i].LastTransitionTime
			}
			conds[i] = c
			return conds
		}
	}
	return append(conds, c)
}

// syncHPA writes the status the HPA controller would after the delay: the
// target's replicas as current, the same clamped to min/max as desired (the
// simulated metrics never ask for more or fewer), and its conditions. It does
// not scale the target.
func (s *simulator) syncHPA(ctx context.Context, k simKey, h *autoscalingv2.HorizontalPodAutoscaler) (time.Duration, error) {
	if h.DeletionTimestamp != nil {
		return 0, nil
	}
	if wait := s.readyIn(k, h.Generation); wait > 0 {
		return wait, nil
	}
	ref := h.Spec.ScaleTargetRef
	current, exists := s.targetReplicas(h.Namespace, ref)
	if !exists && time.Since(h.CreationTimestamp.Time) < hpaTargetGrace {
		return time.Second, nil
	}
	now := metav1.Now()
	st := h.Status.DeepCopy()
	st.ObservedGeneration = ptr(h.Generation)
	cond := func(t autoscalingv2.HorizontalPodAutoscalerConditionType, status corev1.ConditionStatus, reason, message string) {
		st.Conditions = setHPACondition(st.Conditions, autoscalingv2.HorizontalPodAutoscalerCondition{
			Type: t, Status: status, Reason: reason, Message: message, LastTransitionTime: now,
		})
	}
	if !exists {
		cond(autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedGetScale",
			fmt.Sprintf("the HPA controller was unable to get the target's current scale: %s %q not found", strings.ToLower(ref.Kind)+"s", ref.Name))
	} else {
		minReplicas := int32(1)
		if h.Spec.MinReplicas != nil {
			minReplicas = *h.Spec.MinReplicas
		}
		desired := current
		limited, limitReason, limitMessage := corev1.ConditionFalse, "DesiredWithinRange", "the desired count is within the acceptable range"
		switch {
		case desired < minReplicas:
			desired = minReplicas
			limited, limitReason, limitMessage = corev1.ConditionTrue, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
		case desired > h.Spec.MaxReplicas:
			desired = h.Spec.MaxReplicas
			limited, limitReason, limitMessage = corev1.ConditionTrue, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
		}
		st.CurrentReplicas = current
		st.DesiredReplicas = desired
		cond(autoscalingv2.AbleToScale, corev1.ConditionTrue, "ReadyForNewScale", "recommended size matches current size")
		cond(autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from the simulated metrics")
		cond(autoscalingv2.ScalingLimited, limited, limitReason, limitMessage)
	}
	if !equality.Semantic.DeepEqual(st, &h.Status) {
		h.Status = *st
		if _, err := s.kube.AutoscalingV2().HorizontalPodAutoscalers(h.Namespace).UpdateStatus(ctx, h, metav1.UpdateOptions{}); err != nil {
			return 0, err
		}
	}
	// The HPA controller resyncs every 15 s; the simulator follows its target sooner.
	return 5 * time.Second, nil
}
