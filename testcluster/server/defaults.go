package main

// Server-side defaults, allocation and the few validations of built-in types
// that GitOps tooling runs into (immutable fields). The defaults follow what a
// real cluster fills in, so that "no diff noise from server defaults" is tested.

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func ptr[T any](v T) *T { return &v }

func registerDefaults(s *runtime.Scheme) {
	s.AddTypeDefaultingFunc(&corev1.Namespace{}, func(o interface{}) {
		ns := o.(*corev1.Namespace)
		if ns.Name != "" {
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			ns.Labels["kubernetes.io/metadata.name"] = ns.Name
		}
		if ns.Status.Phase == "" {
			ns.Status.Phase = corev1.NamespaceActive
		}
	})
	s.AddTypeDefaultingFunc(&corev1.Secret{}, func(o interface{}) {
		sec := o.(*corev1.Secret)
		if sec.Type == "" {
			sec.Type = corev1.SecretTypeOpaque
		}
		if len(sec.StringData) > 0 {
			if sec.Data == nil {
				sec.Data = map[string][]byte{}
			}
			for k, v := range sec.StringData {
				sec.Data[k] = []byte(v)
			}
			sec.StringData = nil
		}
	})
	s.AddTypeDefaultingFunc(&corev1.Pod{}, func(o interface{}) {
		p := o.(*corev1.Pod)
		defaultPodSpec(&p.Spec)
		if p.Spec.EnableServiceLinks == nil {
			p.Spec.EnableServiceLinks = ptr(true)
		}
		for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for i := range cs {
				c := &cs[i]
				// Requests default to limits on pods.
				for name, q := range c.Resources.Limits {
					if c.Resources.Requests == nil {
						c.Resources.Requests = corev1.ResourceList{}
					}
					if _, ok := c.Resources.Requests[name]; !ok {
						c.Resources.Requests[name] = q.DeepCopy()
					}
				}
			}
		}
		if p.Status.Phase == "" && p.Name != "" && p.ResourceVersion != "" {
			p.Status.Phase = corev1.PodPending
		}
	})
	s.AddTypeDefaultingFunc(&corev1.Service{}, func(o interface{}) { defaultService(o.(*corev1.Service)) })
	s.AddTypeDefaultingFunc(&corev1.Endpoints{}, func(o interface{}) {
		e := o.(*corev1.Endpoints)
		for i := range e.Subsets {
			for j := range e.Subsets[i].Ports {
				if e.Subsets[i].Ports[j].Protocol == "" {
					e.Subsets[i].Ports[j].Protocol = corev1.ProtocolTCP
				}
			}
		}
	})
	s.AddTypeDefaultingFunc(&corev1.PersistentVolumeClaim{}, func(o interface{}) {
		defaultPVC(o.(*corev1.PersistentVolumeClaim))
	})
	s.AddTypeDefaultingFunc(&appsv1.Deployment{}, func(o interface{}) {
		d := o.(*appsv1.Deployment)
		if d.Spec.Replicas == nil {
			d.Spec.Replicas = ptr(int32(1))
		}
		if d.Spec.Strategy.Type == "" {
			d.Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
		}
		if d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
			if d.Spec.Strategy.RollingUpdate == nil {
				d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
			}
			if d.Spec.Strategy.RollingUpdate.MaxUnavailable == nil {
				d.Spec.Strategy.RollingUpdate.MaxUnavailable = ptr(intstr.FromString("25%"))
			}
			if d.Spec.Strategy.RollingUpdate.MaxSurge == nil {
				d.Spec.Strategy.RollingUpdate.MaxSurge = ptr(intstr.FromString("25%"))
			}
		}
		if d.Spec.RevisionHistoryLimit == nil {
			d.Spec.RevisionHistoryLimit = ptr(int32(10))
		}
		if d.Spec.ProgressDeadlineSeconds == nil {
			d.Spec.ProgressDeadlineSeconds = ptr(int32(600))
		}
		defaultPodSpec(&d.Spec.Template.Spec)
	})
	s.AddTypeDefaultingFunc(&appsv1.ReplicaSet{}, func(o interface{}) {
		r := o.(*appsv1.ReplicaSet)
		if r.Spec.Replicas == nil {
			r.Spec.Replicas = ptr(int32(1))
		}
		defaultPodSpec(&r.Spec.Template.Spec)
	})
	s.AddTypeDefaultingFunc(&appsv1.StatefulSet{}, func(o interface{}) {
		st := o.(*appsv1.StatefulSet)
		if st.Spec.Replicas == nil {
			st.Spec.Replicas = ptr(int32(1))
		}
		if st.Spec.PodManagementPolicy == "" {
			st.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
		}
		if st.Spec.UpdateStrategy.Type == "" {
			st.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
		}
		if st.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType {
			if st.Spec.UpdateStrategy.RollingUpdate == nil {
				st.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
			}
			if st.Spec.UpdateStrategy.RollingUpdate.Partition == nil {
				st.Spec.UpdateStrategy.RollingUpdate.Partition = ptr(int32(0))
			}
		}
		if st.Spec.RevisionHistoryLimit == nil {
			st.Spec.RevisionHistoryLimit = ptr(int32(10))
		}
		if st.Spec.PersistentVolumeClaimRetentionPolicy == nil {
			st.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
		}
		if st.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted == "" {
			st.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
		}
		if st.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled == "" {
			st.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
		}
		for i := range st.Spec.VolumeClaimTemplates {
			defaultPVC(&st.Spec.VolumeClaimTemplates[i])
		}
		defaultPodSpec(&st.Spec.Template.Spec)
	})
	s.AddTypeDefaultingFunc(&appsv1.DaemonSet{}, func(o interface{}) {
		d := o.(*appsv1.DaemonSet)
		if d.Spec.UpdateStrategy.Type == "" {
			d.Spec.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
		}
		if d.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
			if d.Spec.UpdateStrategy.RollingUpdate == nil {
				d.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
			}
			if d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable == nil {
				d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = ptr(intstr.FromInt32(1))
			}
			if d.Spec.UpdateStrategy.RollingUpdate.MaxSurge == nil {
				d.Spec.UpdateStrategy.RollingUpdate.MaxSurge = ptr(intstr.FromInt32(0))
			}
		}
		if d.Spec.RevisionHistoryLimit == nil {
			d.Spec.RevisionHistoryLimit = ptr(int32(10))
		}
		defaultPodSpec(&d.Spec.Template.Spec)
	})
	s.AddTypeDefaultingFunc(&batchv1.Job{}, func(o interface{}) {
		j := o.(*batchv1.Job)
		defaultJobSpec(&j.Spec)
	})
	s.AddTypeDefaultingFunc(&batchv1.CronJob{}, func(o interface{}) {
		c := o.(*batchv1.CronJob)
		if c.Spec.ConcurrencyPolicy == "" {
			c.Spec.ConcurrencyPolicy = batchv1.AllowConcurrent
		}
		if c.Spec.Suspend == nil {
			c.Spec.Suspend = ptr(false)
		}
		if c.Spec.SuccessfulJobsHistoryLimit == nil {
			c.Spec.SuccessfulJobsHistoryLimit = ptr(int32(3))
		}
		if c.Spec.FailedJobsHistoryLimit == nil {
			c.Spec.FailedJobsHistoryLimit = ptr(int32(1))
		}
		defaultPodSpec(&c.Spec.JobTemplate.Spec.Template.Spec)
	})
	s.AddTypeDefaultingFunc(&rbacv1.RoleBinding{}, func(o interface{}) { defaultSubjects(o.(*rbacv1.RoleBinding).Subjects) })
	s.AddTypeDefaultingFunc(&rbacv1.ClusterRoleBinding{}, func(o interface{}) {
		defaultSubjects(o.(*rbacv1.ClusterRoleBinding).Subjects)
	})
	s.AddTypeDefaultingFunc(&networkingv1.NetworkPolicy{}, func(o interface{}) {
		np := o.(*networkingv1.NetworkPolicy)
		for i := range np.Spec.Ingress {
			for j := range np.Spec.Ingress[i].Ports {
				if np.Spec.Ingress[i].Ports[j].Protocol == nil {
					np.Spec.Ingress[i].Ports[j].Protocol = ptr(corev1.ProtocolTCP)
				}
			}
		}
		for i := range np.Spec.Egress {
			for j := range np.Spec.Egress[i].Ports {
				if np.Spec.Egress[i].Ports[j].Protocol == nil {
					np.Spec.Egress[i].Ports[j].Protocol = ptr(corev1.ProtocolTCP)
				}
			}
		}
		if len(np.Spec.PolicyTypes) == 0 {
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(np.Spec.Egress) > 0 {
				np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			}
		}
	})
	s.AddTypeDefaultingFunc(&autoscalingv2.HorizontalPodAutoscaler{}, func(o interface{}) {
		h := o.(*autoscalingv2.HorizontalPodAutoscaler)
		if h.Spec.MinReplicas == nil {
			h.Spec.MinReplicas = ptr(int32(1))
		}
		if len(h.Spec.Metrics) == 0 {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name:   corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr(int32(80))},
				},
			}}
		}
		if h.Spec.Behavior != nil {
			b := h.Spec.Behavior
			if b.ScaleUp == nil {
				b.ScaleUp = &autoscalingv2.HPAScalingRules{}
			}
			if b.ScaleUp.StabilizationWindowSeconds == nil {
				b.ScaleUp.StabilizationWindowSeconds = ptr(int32(0))
			}
			if b.ScaleUp.SelectPolicy == nil {
				b.ScaleUp.SelectPolicy = ptr(autoscalingv2.MaxChangePolicySelect)
			}
			if len(b.ScaleUp.Policies) == 0 {
				b.ScaleUp.Policies = []autoscalingv2.HPAScalingPolicy{
					{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
					{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
				}
			}
			if b.ScaleDown == nil {
				b.ScaleDown = &autoscalingv2.HPAScalingRules{}
			}
			if b.ScaleDown.SelectPolicy == nil {
				b.ScaleDown.SelectPolicy = ptr(autoscalingv2.MaxChangePolicySelect)
			}
			if len(b.ScaleDown.Policies) == 0 {
				b.ScaleDown.Policies = []autoscalingv2.HPAScalingPolicy{
					{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
				}
			}
		}
	})
}

func defaultSubjects(subjects []rbacv1.Subject) {
	for i := range subjects {
		if subjects[i].APIGroup == "" && (subjects[i].Kind == rbacv1.UserKind || subjects[i].Kind == rbacv1.GroupKind) {
			subjects[i].APIGroup = rbacv1.GroupName
		}
	}
}

func defaultPVC(p *corev1.PersistentVolumeClaim) {
	if p.Spec.VolumeMode == nil {
		p.Spec.VolumeMode = ptr(corev1.PersistentVolumeFilesystem)
	}
	if p.Status.Phase == "" {
		p.Status.Phase = corev1.ClaimPending
	}
}

func defaultJobSpec(s *batchv1.JobSpec) {
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions = ptr(int32(1))
		s.Parallelism = ptr(int32(1))
	}
	if s.Parallelism == nil {
		s.Parallelism = ptr(int32(1))
	}
	if s.BackoffLimit == nil {
		if s.BackoffLimitPerIndex != nil {
			s.BackoffLimit = ptr(int32(2147483647))
		} else {
			s.BackoffLimit = ptr(int32(6))
		}
	}
	if s.CompletionMode == nil {
		s.CompletionMode = ptr(batchv1.NonIndexedCompletion)
	}
	if s.Suspend == nil {
		s.Suspend = ptr(false)
	}
	if s.PodReplacementPolicy == nil {
		if s.PodFailurePolicy != nil {
			s.PodReplacementPolicy = ptr(batchv1.Failed)
		} else {
			s.PodReplacementPolicy = ptr(batchv1.TerminatingOrFailed)
		}
	}
	defaultPodSpec(&s.Template.Spec)
}

func defaultPodSpec(s *corev1.PodSpec) {
	if s.DNSPolicy == "" {
		s.DNSPolicy = corev1.DNSClusterFirst
	}
	if s.RestartPolicy == "" {
		s.RestartPolicy = corev1.RestartPolicyAlways
	}
	if s.SecurityContext == nil {
		s.SecurityContext = &corev1.PodSecurityContext{}
	}
	if s.TerminationGracePeriodSeconds == nil {
		s.TerminationGracePeriodSeconds = ptr(int64(30))
	}
	if s.SchedulerName == "" {
		s.SchedulerName = corev1.DefaultSchedulerName
	}
	for i := range s.InitContainers {
		defaultContainer(&s.InitContainers[i], s.HostNetwork)
	}
	for i := range s.Containers {
		defaultContainer(&s.Containers[i], s.HostNetwork)
	}
	for i := range s.Volumes {
		defaultVolume(&s.Volumes[i])
	}
}

func defaultVolume(v *corev1.Volume) {
	src := &v.VolumeSource
	if equality.Semantic.DeepEqual(*src, corev1.VolumeSource{}) {
		src.EmptyDir = &corev1.EmptyDirVolumeSource{}
	}
	mode := ptr(int32(corev1.SecretVolumeSourceDefaultMode))
	if src.Secret != nil && src.Secret.DefaultMode == nil {
		src.Secret.DefaultMode = mode
	}
	if src.ConfigMap != nil && src.ConfigMap.DefaultMode == nil {
		src.ConfigMap.DefaultMode = mode
	}
	if src.DownwardAPI != nil {
		if src.DownwardAPI.DefaultMode == nil {
			src.DownwardAPI.DefaultMode = mode
		}
		for i := range src.DownwardAPI.Items {
			if f := src.DownwardAPI.Items[i].FieldRef; f != nil && f.APIVersion == "" {
				f.APIVersion = "v1"
			}
		}
	}
	if src.Projected != nil {
		if src.Projected.DefaultMode == nil {
			src.Projected.DefaultMode = mode
		}
		for i := range src.Projected.Sources {
			if t := src.Projected.Sources[i].ServiceAccountToken; t != nil && t.ExpirationSeconds == nil {
				t.ExpirationSeconds = ptr(int64(3600))
			}
			if d := src.Projected.Sources[i].DownwardAPI; d != nil {
				for j := range d.Items {
					if f := d.Items[j].FieldRef; f != nil && f.APIVersion == "" {
						f.APIVersion = "v1"
					}
				}
			}
		}
	}
	if src.HostPath != nil && src.HostPath.Type == nil {
		src.HostPath.Type = ptr(corev1.HostPathUnset)
	}
	if src.Ephemeral != nil && src.Ephemeral.VolumeClaimTemplate != nil {
		if src.Ephemeral.VolumeClaimTemplate.Spec.VolumeMode == nil {
			src.Ephemeral.VolumeClaimTemplate.Spec.VolumeMode = ptr(corev1.PersistentVolumeFilesystem)
		}
	}
}

func defaultProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	if h := p.HTTPGet; h != nil {
		if h.Path == "" {
			h.Path = "/"
		}
		if h.Scheme == "" {
			h.Scheme = corev1.URISchemeHTTP
		}
	}
	if g := p.GRPC; g != nil && g.Service == nil {
		g.Service = ptr("")
	}
}

func defaultContainer(c *corev1.Container, hostNetwork bool) {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = defaultPullPolicy(c.Image)
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = corev1.ProtocolTCP
		}
		if hostNetwork && c.Ports[i].HostPort == 0 {
			c.Ports[i].HostPort = c.Ports[i].ContainerPort
		}
	}
	for i := range c.Env {
		if vf := c.Env[i].ValueFrom; vf != nil && vf.FieldRef != nil && vf.FieldRef.APIVersion == "" {
			vf.FieldRef.APIVersion = "v1"
		}
	}
	defaultProbe(c.LivenessProbe)
	defaultProbe(c.ReadinessProbe)
	defaultProbe(c.StartupProbe)
	for _, h := range []*corev1.LifecycleHandler{lifecyclePost(c), lifecyclePre(c)} {
		if h != nil && h.HTTPGet != nil {
			if h.HTTPGet.Path == "" {
				h.HTTPGet.Path = "/"
			}
			if h.HTTPGet.Scheme == "" {
				h.HTTPGet.Scheme = corev1.URISchemeHTTP
			}
		}
	}
}

func lifecyclePost(c *corev1.Container) *corev1.LifecycleHandler {
	if c.Lifecycle == nil {
		return nil
	}
	return c.Lifecycle.PostStart
}

func lifecyclePre(c *corev1.Container) *corev1.LifecycleHandler {
	if c.Lifecycle == nil {
		return nil
	}
	return c.Lifecycle.PreStop
}

// defaultPullPolicy is Always for ":latest" or untagged images, else IfNotPresent.
func defaultPullPolicy(image string) corev1.PullPolicy {
	if image == "" {
		return corev1.PullIfNotPresent
	}
	if strings.Contains(image, "@") {
		return corev1.PullIfNotPresent
	}
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	i := strings.LastIndex(name, ":")
	if i < 0 || name[i+1:] == "latest" {
		return corev1.PullAlways
	}
	return corev1.PullIfNotPresent
}

func defaultService(s *corev1.Service) {
	if s.Spec.SessionAffinity == "" {
		s.Spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		if s.Spec.SessionAffinityConfig == nil {
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{}
		}
		if s.Spec.SessionAffinityConfig.ClientIP == nil {
			s.Spec.SessionAffinityConfig.ClientIP = &corev1.ClientIPConfig{}
		}
		if s.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil {
			s.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds = ptr(int32(corev1.DefaultClientIPServiceAffinitySeconds))
		}
	}
	if s.Spec.Type == "" {
		s.Spec.Type = corev1.ServiceTypeClusterIP
	}
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == intstr.FromInt32(0) || p.TargetPort == intstr.FromString("") {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer {
		if s.Spec.ExternalTrafficPolicy == "" {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		}
	}
	if s.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.InternalTrafficPolicy == nil {
		s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyCluster)
	}
	if s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.AllocateLoadBalancerNodePorts == nil {
		s.Spec.AllocateLoadBalancerNodePorts = ptr(true)
	}
}

// allocator hands out service cluster IPs (10.96.0.0/12) and node ports.
type allocator struct {
	mu    sync.Mutex
	ips   map[string]bool
	ports map[int32]bool
}

var alloc = &allocator{ips: map[string]bool{}, ports: map[int32]bool{}}

func (a *allocator) ip() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		// 10.96.0.0/12 without the network, the first (kubernetes) and broadcast addresses.
		n := 2 + rand.Intn((1<<20)-3)
		ip := net.IPv4(10, byte(96+(n>>16)), byte(n>>8), byte(n)).String()
		if !a.ips[ip] {
			a.ips[ip] = true
			return ip
		}
	}
}

func (a *allocator) podIP() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		n := 2 + rand.Intn((1<<16)-3)
		ip := net.IPv4(10, 244, byte(n>>8), byte(n)).String()
		if !a.ips[ip] {
			a.ips[ip] = true
			return ip
		}
	}
}

func (a *allocator) port() int32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		p := int32(30000 + rand.Intn(2768))
		if !a.ports[p] {
			a.ports[p] = true
			return p
		}
	}
}

func allocateService(s *corev1.Service, old *corev1.Service) {
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		s.Spec.ClusterIP = ""
		s.Spec.ClusterIPs = nil
		s.Spec.IPFamilies = nil
		s.Spec.IPFamilyPolicy = nil
		return
	}
	if old != nil && old.Spec.Type != corev1.ServiceTypeExternalName {
		if s.Spec.ClusterIP == "" {
			s.Spec.ClusterIP = old.Spec.ClusterIP
		}
		if len(s.Spec.ClusterIPs) == 0 {
			s.Spec.ClusterIPs = old.Spec.ClusterIPs
		}
		if len(s.Spec.IPFamilies) == 0 {
			s.Spec.IPFamilies = old.Spec.IPFamilies
		}
		if s.Spec.IPFamilyPolicy == nil {
			s.Spec.IPFamilyPolicy = old.Spec.IPFamilyPolicy
		}
	}
	if s.Spec.ClusterIP == "" && len(s.Spec.ClusterIPs) > 0 {
		s.Spec.ClusterIP = s.Spec.ClusterIPs[0]
	}
	if s.Spec.ClusterIP == "" {
		s.Spec.ClusterIP = alloc.ip()
	}
	if len(s.Spec.ClusterIPs) == 0 {
		s.Spec.ClusterIPs = []string{s.Spec.ClusterIP}
	}
	if len(s.Spec.IPFamilies) == 0 {
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	if s.Spec.IPFamilyPolicy == nil {
		s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicySingleStack)
	}
	if s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for i := range s.Spec.Ports {
			if s.Spec.Ports[i].NodePort != 0 {
				continue
			}
			if old != nil {
				for _, op := range old.Spec.Ports {
					if op.Port == s.Spec.Ports[i].Port && op.Protocol == s.Spec.Ports[i].Protocol && op.NodePort != 0 {
						s.Spec.Ports[i].NodePort = op.NodePort
					}
				}
			}
			if s.Spec.Ports[i].NodePort == 0 {
				s.Spec.Ports[i].NodePort = alloc.port()
			}
		}
	}
}

// prepareForCreate runs type-specific server logic on create (after defaults).
func prepareForCreate(_ context.Context, r *resourceSpec, obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Namespace:
		o.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
		o.Status.Phase = corev1.NamespaceActive
	case *corev1.Service:
		allocateService(o, nil)
	case *corev1.Pod:
		o.Status.Phase = corev1.PodPending
		o.Status.QOSClass = qosClass(&o.Spec)
	case *batchv1.Job:
		generateJobSelector(o)
	}
}

// prepareForUpdate runs type-specific server logic on update.
func prepareForUpdate(_ context.Context, r *resourceSpec, obj, old runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Namespace:
		// spec.finalizers change only through the finalize subresource.
		o.Spec.Finalizers = old.(*corev1.Namespace).Spec.Finalizers
	case *corev1.Service:
		allocateService(o, old.(*corev1.Service))
	case *batchv1.Job:
		oj := old.(*batchv1.Job)
		if o.Spec.Selector == nil {
			o.Spec.Selector = oj.Spec.Selector
		}
		if o.Spec.ManualSelector == nil || !*o.Spec.ManualSelector {
			for k, v := range oj.Spec.Template.Labels {
				if strings.HasPrefix(k, "batch.kubernetes.io/") || k == "controller-uid" || k == "job-name" {
					if o.Spec.Template.Labels == nil {
						o.Spec.Template.Labels = map[string]string{}
					}
					if _, ok := o.Spec.Template.Labels[k]; !ok {
						o.Spec.Template.Labels[k] = v
					}
				}
			}
		}
	}
}

func generateJobSelector(j *batchv1.Job) {
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector {
		return
	}
	uid := string(j.UID)
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	j.Spec.Template.Labels["batch.kubernetes.io/controller-uid"] = uid
	j.Spec.Template.Labels["batch.kubernetes.io/job-name"] = j.Name
	j.Spec.Template.Labels["controller-uid"] = uid
	j.Spec.Template.Labels["job-name"] = j.Name
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": uid}}
	}
}

// validateObject checks the rules of built-in kinds that deployment tools
// commonly hit (required selectors, immutable fields). old is nil on create.
func validateObject(r *resourceSpec, obj, old runtime.Object) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	checkSelector := func(sel *metav1.LabelSelector, tmpl map[string]string) {
		if sel == nil {
			errs = append(errs, field.Required(spec.Child("selector"), ""))
			return
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			errs = append(errs, field.Invalid(spec.Child("selector"), sel, err.Error()))
			return
		}
		if s.Empty() {
			errs = append(errs, field.Invalid(spec.Child("selector"), sel, "empty selector is invalid for deployment"))
			return
		}
		if !s.Matches(labels.Set(tmpl)) {
			errs = append(errs, field.Invalid(spec.Child("template", "metadata", "labels"), tmpl, "`selector` does not match template `labels`"))
		}
	}
	immutable := func(path *field.Path, a, b interface{}) {
		if !equality.Semantic.DeepEqual(a, b) {
			errs = append(errs, field.Invalid(path, a, "field is immutable"))
		}
	}
	checkContainers := func(p *field.Path, cs []corev1.Container, required bool) {
		if required && len(cs) == 0 {
			errs = append(errs, field.Required(p, ""))
		}
		for i, c := range cs {
			if c.Name == "" {
				errs = append(errs, field.Required(p.Index(i).Child("name"), ""))
			}
			if c.Image == "" {
				errs = append(errs, field.Required(p.Index(i).Child("image"), ""))
			}
		}
	}
	tmplPath := spec.Child("template", "spec", "containers")
	tmpl := spec.Child("template")
	switch o := obj.(type) {
	case *appsv1.Deployment:
		errs = append(errs, validatePodTemplate(tmpl, &o.Spec.Template, nil)...)
	case *appsv1.ReplicaSet:
		errs = append(errs, validatePodTemplate(tmpl, &o.Spec.Template, nil)...)
	case *appsv1.DaemonSet:
		errs = append(errs, validatePodTemplate(tmpl, &o.Spec.Template, nil)...)
	case *appsv1.StatefulSet:
		var claims []string
		for _, c := range o.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		errs = append(errs, validatePodTemplate(tmpl, &o.Spec.Template, claims)...)
	case *batchv1.Job:
		errs = append(errs, validatePodTemplate(tmpl, &o.Spec.Template, nil)...)
	case *batchv1.CronJob:
		errs = append(errs, validatePodTemplate(spec.Child("jobTemplate", "spec", "template"), &o.Spec.JobTemplate.Spec.Template, nil)...)
	case *corev1.Pod:
		errs = append(errs, validatePodSpec(field.NewPath("spec"), &o.Spec, nil)...)
	case *corev1.Service:
		for i, p := range o.Spec.Ports {
			pp := spec.Child("ports").Index(i)
			if p.Port < 1 || p.Port > 65535 {
				errs = append(errs, field.Invalid(pp.Child("port"), p.Port, "must be between 1 and 65535, inclusive"))
			}
			if p.NodePort != 0 && (p.NodePort < 30000 || p.NodePort > 32767) {
				errs = append(errs, field.Invalid(pp.Child("nodePort"), p.NodePort, "provided port is not in the valid range. The range of valid ports is 30000-32767"))
			}
			if len(o.Spec.Ports) > 1 && p.Name == "" {
				errs = append(errs, field.Required(pp.Child("name"), ""))
			}
		}
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		checkSelector(o.Spec.Selector, o.Spec.Template.Labels)
		checkContainers(tmplPath, o.Spec.Template.Spec.Containers, true)
		if old != nil {
			immutable(spec.Child("selector"), o.Spec.Selector, old.(*appsv1.Deployment).Spec.Selector)
		}
	case *appsv1.ReplicaSet:
		checkSelector(o.Spec.Selector, o.Spec.Template.Labels)
		if old != nil {
			immutable(spec.Child("selector"), o.Spec.Selector, old.(*appsv1.ReplicaSet).Spec.Selector)
		}
	case *appsv1.DaemonSet:
		checkSelector(o.Spec.Selector, o.Spec.Template.Labels)
		checkContainers(tmplPath, o.Spec.Template.Spec.Containers, true)
		if old != nil {
			immutable(spec.Child("selector"), o.Spec.Selector, old.(*appsv1.DaemonSet).Spec.Selector)
		}
	case *appsv1.StatefulSet:
		checkSelector(o.Spec.Selector, o.Spec.Template.Labels)
		checkContainers(tmplPath, o.Spec.Template.Spec.Containers, true)
		if old != nil {
			os := old.(*appsv1.StatefulSet).Spec.DeepCopy()
			ns := o.Spec.DeepCopy()
			// Only these fields may change; everything else is forbidden.
			os.Replicas, ns.Replicas = nil, nil
			os.Template, ns.Template = corev1.PodTemplateSpec{}, corev1.PodTemplateSpec{}
			os.UpdateStrategy, ns.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{}, appsv1.StatefulSetUpdateStrategy{}
			os.PersistentVolumeClaimRetentionPolicy, ns.PersistentVolumeClaimRetentionPolicy = nil, nil
			os.MinReadySeconds, ns.MinReadySeconds = 0, 0
			os.Ordinals, ns.Ordinals = nil, nil
			os.RevisionHistoryLimit, ns.RevisionHistoryLimit = nil, nil
			if !equality.Semantic.DeepEqual(os, ns) {
				errs = append(errs, field.Forbidden(spec, "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
			}
		}
	case *batchv1.Job:
		checkContainers(tmplPath, o.Spec.Template.Spec.Containers, true)
		rp := o.Spec.Template.Spec.RestartPolicy
		if rp != corev1.RestartPolicyNever && rp != corev1.RestartPolicyOnFailure {
			errs = append(errs, field.NotSupported(spec.Child("template", "spec", "restartPolicy"), rp, []string{string(corev1.RestartPolicyOnFailure), string(corev1.RestartPolicyNever)}))
		}
		if old != nil {
			oj := old.(*batchv1.Job)
			immutable(spec.Child("selector"), o.Spec.Selector, oj.Spec.Selector)
			immutable(spec.Child("completions"), o.Spec.Completions, oj.Spec.Completions)
			immutable(spec.Child("template"), o.Spec.Template, oj.Spec.Template)
		}
	case *corev1.Pod:
		checkContainers(field.NewPath("spec", "containers"), o.Spec.Containers, true)
	case *corev1.ConfigMap:
		if old != nil {
			oc := old.(*corev1.ConfigMap)
			if oc.Immutable != nil && *oc.Immutable {
				immutable(field.NewPath("data"), o.Data, oc.Data)
				immutable(field.NewPath("binaryData"), o.BinaryData, oc.BinaryData)
				immutable(field.NewPath("immutable"), o.Immutable, oc.Immutable)
			}
		}
	case *corev1.Secret:
		if old != nil {
			osec := old.(*corev1.Secret)
			immutable(field.NewPath("type"), o.Type, osec.Type)
			if osec.Immutable != nil && *osec.Immutable {
				immutable(field.NewPath("data"), o.Data, osec.Data)
				immutable(field.NewPath("immutable"), o.Immutable, osec.Immutable)
			}
		}
	case *corev1.Service:
		if o.Spec.Type != corev1.ServiceTypeExternalName && len(o.Spec.Ports) == 0 && o.Spec.ClusterIP != corev1.ClusterIPNone {
			errs = append(errs, field.Required(spec.Child("ports"), ""))
		}
		if old != nil {
			os := old.(*corev1.Service)
			if os.Spec.Type != corev1.ServiceTypeExternalName && o.Spec.Type != corev1.ServiceTypeExternalName {
				immutable(spec.Child("clusterIP"), o.Spec.ClusterIP, os.Spec.ClusterIP)
			}
		}
	case *rbacv1.RoleBinding:
		if old != nil {
			immutable(field.NewPath("roleRef"), o.RoleRef, old.(*rbacv1.RoleBinding).RoleRef)
		}
	case *rbacv1.ClusterRoleBinding:
		if old != nil {
			immutable(field.NewPath("roleRef"), o.RoleRef, old.(*rbacv1.ClusterRoleBinding).RoleRef)
		}
	case *corev1.PersistentVolumeClaim:
		if old != nil {
			a := o.Spec.DeepCopy()
			b := old.(*corev1.PersistentVolumeClaim).Spec.DeepCopy()
			a.Resources, b.Resources = corev1.VolumeResourceRequirements{}, corev1.VolumeResourceRequirements{}
			a.VolumeAttributesClassName, b.VolumeAttributesClassName = nil, nil
			if b.VolumeName == "" {
				a.VolumeName = ""
			}
			if !equality.Semantic.DeepEqual(a, b) {
				errs = append(errs, field.Forbidden(spec, "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"))
			}
		}
	}
	return errs
}

func validatePodTemplate(p *field.Path, t *corev1.PodTemplateSpec, extraVolumes []string) field.ErrorList {
	errs := metav1validation.ValidateLabels(t.Labels, p.Child("metadata", "labels"))
	errs = append(errs, apimachineryvalidation.ValidateAnnotations(t.Annotations, p.Child("metadata", "annotations"))...)
	return append(errs, validatePodSpec(p.Child("spec"), &t.Spec, extraVolumes)...)
}

// validatePodSpec checks container names, ports, volume mounts and
// requests against limits, as upstream validation does.
func validatePodSpec(p *field.Path, s *corev1.PodSpec, extraVolumes []string) field.ErrorList {
	var errs field.ErrorList
	volumes := map[string]bool{}
	for _, v := range extraVolumes {
		volumes[v] = true
	}
	for i, v := range s.Volumes {
		vp := p.Child("volumes").Index(i).Child("name")
		if volumes[v.Name] {
			errs = append(errs, field.Duplicate(vp, v.Name))
		}
		for _, msg := range utilvalidation.IsDNS1123Label(v.Name) {
			errs = append(errs, field.Invalid(vp, v.Name, msg))
		}
		volumes[v.Name] = true
	}
	names := map[string]bool{}
	check := func(cp *field.Path, cs []corev1.Container) {
		for i, c := range cs {
			ip := cp.Index(i)
			if names[c.Name] {
				errs = append(errs, field.Duplicate(ip.Child("name"), c.Name))
			}
			names[c.Name] = true
			if c.Name != "" {
				for _, msg := range utilvalidation.IsDNS1123Label(c.Name) {
					errs = append(errs, field.Invalid(ip.Child("name"), c.Name, msg))
				}
			}
			for j, port := range c.Ports {
				if port.ContainerPort < 1 || port.ContainerPort > 65535 {
					errs = append(errs, field.Invalid(ip.Child("ports").Index(j).Child("containerPort"), port.ContainerPort, "must be between 1 and 65535, inclusive"))
				}
			}
			for j, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					errs = append(errs, field.NotFound(ip.Child("volumeMounts").Index(j).Child("name"), m.Name))
				}
			}
			for name, req := range c.Resources.Requests {
				if lim, ok := c.Resources.Limits[name]; ok && req.Cmp(lim) > 0 {
					errs = append(errs, field.Invalid(ip.Child("resources", "requests").Key(string(name)), req.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
				}
			}
		}
	}
	check(p.Child("initContainers"), s.InitContainers)
	check(p.Child("containers"), s.Containers)
	return errs
}
