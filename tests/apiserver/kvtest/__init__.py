"""kvtest: a small, wire-faithful stand-in for kube-apiserver used by the test suites."""
