package main

// ServiceAccount tokens (--rbac only): the TokenRequest subresource
// (POST .../serviceaccounts/NAME/token, what `kubectl create token` sends)
// issues ES256-signed JWTs shaped like a real cluster's bound tokens, with the
// signing key in DATA_DIR/sa.key. The bearer-token authenticator accepts them
// while they are unexpired, carry the API server's audience and the
// ServiceAccount still exists with the same uid; the user is
// system:serviceaccount:NS:NAME in the groups system:serviceaccounts,
// system:serviceaccounts:NS and system:authenticated.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
)

// saIssuer is the issuer and the API server's audience, as in a default cluster.
const saIssuer = "https://kubernetes.default.svc.cluster.local"

type tokenIssuer struct {
	key *ecdsa.PrivateKey
	kid string
}

type saClaims struct {
	Issuer     string   `json:"iss"`
	Subject    string   `json:"sub"`
	Audience   []string `json:"aud"`
	Expiry     int64    `json:"exp"`
	IssuedAt   int64    `json:"iat"`
	NotBefore  int64    `json:"nbf"`
	ID         string   `json:"jti"`
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

// newTokenIssuer loads DATA_DIR/sa.key or creates it.
func newTokenIssuer(dataDir string) (*tokenIssuer, error) {
	path := filepath.Join(dataDir, "sa.key")
	var key *ecdsa.PrivateKey
	if b, err := os.ReadFile(path); err == nil {
		block, _ := pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("no PEM data in %s", path)
		}
		if key, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
			return nil, fmt.Errorf("failed to parse %s: %w", path, err)
		}
	} else {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("failed to generate the token signing key: %w", err)
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("failed to encode the token signing key: %w", err)
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("failed to write %s: %w", path, err)
		}
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("failed to encode the token public key: %w", err)
	}
	sum := sha256.Sum256(pub)
	return &tokenIssuer{key: key, kid: hex.EncodeToString(sum[:16])}, nil
}

var b64 = base64.RawURLEncoding

func (t *tokenIssuer) issue(sa *corev1.ServiceAccount, audiences []string, ttl time.Duration, now time.Time) (string, time.Time, error) {
	exp := now.Add(ttl)
	c := saClaims{Issuer: saIssuer, Subject: serviceaccount.MakeUsername(sa.Namespace, sa.Name), Audience: audiences,
		Expiry: exp.Unix(), IssuedAt: now.Unix(), NotBefore: now.Unix(), ID: string(uuid.NewUUID())}
	c.Kubernetes.Namespace = sa.Namespace
	c.Kubernetes.ServiceAccount.Name = sa.Name
	c.Kubernetes.ServiceAccount.UID = string(sa.UID)
	header, err := json.Marshal(map[string]string{"alg": "ES256", "kid": t.kid})
	if err != nil {
		return "", time.Time{}, err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", time.Time{}, err
	}
	signed := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, t.key, digest[:])
	if err != nil {
		return "", time.Time{}, err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + b64.EncodeToString(sig), exp, nil
}

// verify checks the signature, issuer, audience and validity period.
func (t *tokenIssuer) verify(token string, now time.Time) (*saClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &header) != nil || header.Alg != "ES256" || header.Kid != t.kid {
		return nil, errors.New("not a token of this cluster")
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return nil, errors.New("malformed signature")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(&t.key.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return nil, errors.New("invalid signature")
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("malformed claims")
	}
	var c saClaims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, errors.New("malformed claims")
	}
	switch {
	case c.Issuer != saIssuer:
		return nil, errors.New("wrong issuer")
	case !slices.Contains(c.Audience, saIssuer):
		return nil, errors.New("token audiences do not include the API server")
	case now.Unix() >= c.Expiry:
		return nil, errors.New("token has expired")
	case now.Unix() < c.NotBefore-60:
		return nil, errors.New("token is not valid yet")
	}
	return &c, nil
}

// authenticateToken authenticates a ServiceAccount token: (nil, false, nil)
// when it is none of ours, an error when it is ours but no longer valid.
func (m *rbacMode) authenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	if strings.Count(token, ".") != 2 {
		return nil, false, nil
	}
	c, err := m.tokens.verify(token, time.Now())
	if err != nil {
		return nil, false, fmt.Errorf("invalid service account token: %w", err)
	}
	ns, name := c.Kubernetes.Namespace, c.Kubernetes.ServiceAccount.Name
	sa, err := m.saLister.ServiceAccounts(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// Created a moment ago and not in the cache yet, or gone.
		sa, err = m.client.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, false, fmt.Errorf("service account %s/%s: %w", ns, name, err)
	}
	if string(sa.UID) != c.Kubernetes.ServiceAccount.UID {
		return nil, false, fmt.Errorf("service account %s/%s was deleted and recreated (uid %s, token for %s)", ns, name, sa.UID, c.Kubernetes.ServiceAccount.UID)
	}
	return &authenticator.Response{
		Audiences: c.Audience,
		User: &user.DefaultInfo{
			Name:   serviceaccount.MakeUsername(ns, name),
			UID:    string(sa.UID),
			Groups: append(serviceaccount.MakeGroupNames(ns), user.AllAuthenticated),
			Extra:  map[string][]string{"authentication.kubernetes.io/credential-id": {"JTI=" + c.ID}},
		},
	}, true, nil
}

// tokenREST serves serviceaccounts/token (TokenRequest).
type tokenREST struct {
	serviceAccounts rest.Getter
	tokens          *tokenIssuer
}

var _ rest.NamedCreater = &tokenREST{}
var _ rest.GroupVersionKindProvider = &tokenREST{}

func (r *tokenREST) New() runtime.Object   { return &authenticationv1.TokenRequest{} }
func (r *tokenREST) Destroy()              {}
func (r *tokenREST) NamespaceScoped() bool { return true }
func (r *tokenREST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return authenticationv1.SchemeGroupVersion.WithKind("TokenRequest")
}

func (r *tokenREST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	req := obj.(*authenticationv1.TokenRequest)
	if createValidation != nil {
		if err := createValidation(ctx, obj.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	ttl := int64(3600)
	if req.Spec.ExpirationSeconds != nil {
		ttl = *req.Spec.ExpirationSeconds
	}
	if ttl < 600 {
		return nil, apierrors.NewInvalid(authenticationv1.SchemeGroupVersion.WithKind("TokenRequest").GroupKind(), name,
			field.ErrorList{field.Invalid(field.NewPath("spec", "expirationSeconds"), ttl, "may not specify a duration less than 10 minutes")})
	}
	if req.Spec.BoundObjectRef != nil {
		return nil, apierrors.NewBadRequest("boundObjectRef is not supported by the test cluster")
	}
	obj2, err := r.serviceAccounts.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	sa := obj2.(*corev1.ServiceAccount)
	if len(req.Spec.Audiences) == 0 {
		req.Spec.Audiences = []string{saIssuer}
	}
	req.Spec.ExpirationSeconds = &ttl
	if len(options.DryRun) > 0 {
		return req, nil
	}
	token, exp, err := r.tokens.issue(sa, req.Spec.Audiences, time.Duration(ttl)*time.Second, time.Now())
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	req.Name = name
	req.Namespace = request.NamespaceValue(ctx)
	req.CreationTimestamp = metav1.Now()
	req.Status = authenticationv1.TokenRequestStatus{Token: token, ExpirationTimestamp: metav1.NewTime(exp)}
	return req, nil
}
