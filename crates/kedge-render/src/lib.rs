//! Turns a directory of YAML, JSON or a Kustomize overlay into an ordered set of Kubernetes objects.
