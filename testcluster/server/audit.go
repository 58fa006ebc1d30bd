package main

// The audit log: when --audit-log is given, every request that may change
// something (all verbs but get, list and watch) is appended to a file as one
// JSON line (audit.k8s.io/v1 Event at Metadata level, stage ResponseComplete):
// user, user agent, verb, object, response code and timestamps. Tests read it
// to tell which client wrote what, and in which order.

import (
	"fmt"
	"io"
	"os"
	"sync"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"
	genericapiserver "k8s.io/apiserver/pkg/server"
	auditlog "k8s.io/apiserver/plugin/pkg/audit/log"
)

// lockedWriter serializes the backend's writes: requests finish on many
// goroutines, and each event must stay one whole line.
type lockedWriter struct {
	mu  sync.Mutex
	out io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(p)
}

func enableAudit(cfg *genericapiserver.RecommendedConfig, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("failed to open the audit log: %w", err)
	}
	cfg.AuditBackend = auditlog.NewBackend(&lockedWriter{out: f}, auditlog.FormatJson, auditv1.SchemeGroupVersion)
	cfg.AuditPolicyRuleEvaluator = auditpolicy.NewPolicyRuleEvaluator(&auditinternal.Policy{
		OmitStages: []auditinternal.Stage{auditinternal.StageRequestReceived, auditinternal.StageResponseStarted},
		Rules: []auditinternal.PolicyRule{
			{Level: auditinternal.LevelNone, Verbs: []string{"get", "list", "watch"}},
			{Level: auditinternal.LevelNone, NonResourceURLs: []string{"*"}},
			{Level: auditinternal.LevelMetadata},
		},
	})
	return nil
}
